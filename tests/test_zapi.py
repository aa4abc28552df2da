"""The Z-API client against real local HTTP servers: requests, errors, retries, secrets."""

import json
import logging
import socket
import threading
import traceback
from types import SimpleNamespace

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from dashboard import zapi as zapi_module
from dashboard.zapi import ZapiClient, ZapiError

INSTANCE = "3C9E1A2B4D5F60718293A4B5C6D7E8F9"
TOKEN = "A1B2C3D4E5F6A7B8C9D0E1F2"
CLIENT_TOKEN = "F0123456789abcdefABCDEF0123456789"
SECRETS = (TOKEN, CLIENT_TOKEN)
PREFIX = f"/instances/{INSTANCE}/token/{TOKEN}"
DELIVERY = f"{PREFIX}/update-webhook-delivery"
HOOK = "https://dashboard.example.com/webhooks/hook-secret-123"


def make_client(base_url, client_token=CLIENT_TOKEN, **options):
    """A client with timeouts and back-off small enough for a fast suite."""
    settings = {"connect_timeout": 1, "read_timeout": 1, "attempts": 3, "backoff": 0.01}
    return ZapiClient(base_url, INSTANCE, TOKEN, client_token, **(settings | options))


def base_of(server):
    return server.url_for("").rstrip("/")


@pytest.fixture
def zapi(httpserver):
    client = make_client(base_of(httpserver))
    yield client
    client.close()


@pytest.fixture(autouse=True)
def no_secret_in_any_log(caplog):
    """Every test runs with DEBUG logging everywhere, and no record may hold a secret."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        for secret in SECRETS:
            assert secret not in record.getMessage(), (record.name, record.getMessage())
    for secret in SECRETS:
        assert secret not in caplog.text


@pytest.fixture
def sleeps(monkeypatch):
    """Record the back-off delays instead of sleeping them."""
    delays = []
    monkeypatch.setattr(zapi_module, "time", SimpleNamespace(sleep=delays.append))
    return delays


def assert_clean(exc: ZapiError):
    """No secret in the message, params, repr, or anything a traceback would print."""
    printed = "".join(traceback.format_exception(exc))
    for secret in SECRETS:
        assert secret not in str(exc)
        assert secret not in repr(exc)
        assert secret not in exc.message
        assert all(secret not in str(value) for value in exc.params.values())
        assert secret not in printed
    # The requests exception (whose text is the token URL) is not kept for a traceback.
    assert exc.__cause__ is None
    assert exc.__context__ is None
    assert str(exc) == exc.message % exc.params


def fail(call) -> ZapiError:
    with pytest.raises(ZapiError) as caught:
        call()
    assert_clean(caught.value)
    return caught.value


# 1. The request itself


@pytest.mark.parametrize(
    ("kind", "endpoint"),
    [
        ("delivery", "update-webhook-delivery"),
        ("message-status", "update-webhook-message-status"),
        ("received", "update-webhook-received"),
        ("connected", "update-webhook-connected"),
        ("disconnected", "update-webhook-disconnected"),
        ("chat-presence", "update-webhook-chat-presence"),
    ],
)
def test_set_webhook_sends_exactly_the_documented_request(httpserver, zapi, kind, endpoint):
    httpserver.expect_request(f"{PREFIX}/{endpoint}").respond_with_json({"value": True})

    zapi.set_webhook(kind, HOOK)

    assert len(httpserver.log) == 1
    request, response = httpserver.log[0]
    assert response.status_code == 200
    assert request.method == "PUT"
    assert request.path == f"/instances/{INSTANCE}/token/{TOKEN}/{endpoint}"
    assert request.headers["Client-Token"] == CLIENT_TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == {"value": HOOK}


def test_notify_sent_by_me_sends_exactly_the_documented_request(httpserver, zapi):
    httpserver.expect_request(f"{PREFIX}/update-notify-sent-by-me").respond_with_json(
        {"value": True}
    )

    zapi.notify_sent_by_me()

    (request, _), *rest = httpserver.log
    assert rest == []
    assert request.method == "PUT"
    assert request.headers["Client-Token"] == CLIENT_TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == {"notifySentByMe": True}


@pytest.mark.parametrize("body", [{"value": False}, {}])
def test_notify_sent_by_me_needs_an_explicit_true(httpserver, zapi, body):
    httpserver.expect_request(f"{PREFIX}/update-notify-sent-by-me").respond_with_json(body)

    assert fail(zapi.notify_sent_by_me).reason == "value-false"


def test_without_a_client_token_no_client_token_header_is_sent(httpserver):
    httpserver.expect_request(DELIVERY, method="PUT").respond_with_json({"value": True})

    make_client(base_of(httpserver), client_token=None).set_webhook("delivery", HOOK)

    (request, _), *_ = httpserver.log
    assert "Client-Token" not in request.headers
    assert request.headers["Content-Type"] == "application/json"


def test_an_unknown_webhook_kind_is_a_programming_error(httpserver, zapi):
    with pytest.raises(ValueError, match="typing"):
        zapi.set_webhook("typing", HOOK)
    assert httpserver.log == []


# 2. Z-API's refusals: one request each, a reason, and a sentence an admin can act on

REFUSALS = [
    (400, {"error": "your client-token is not configured"}, "client-token-missing",
     ["requires a Client-Token", "Security tab", "Client-Token field",
      "your client-token is not configured"]),
    (400, {"error": "null not allowed"}, "client-token-missing",
     ["requires a Client-Token", "Security tab", "null not allowed"]),
    (403, {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, "client-token-wrong",
     ["did not accept the Client-Token", "Security tab", "Client-Token <secret> not allowed"]),
    (400, {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, "client-token-wrong",
     ["did not accept the Client-Token", "HTTP 400"]),
    (403, {"error": "[IP request] not allowed"}, "ip-not-allowed", ["IP address", "Security tab"]),
    (404, "", "instance-not-found", ["instance ID and the instance token", "HTTP 404"]),
    (400, {"error": "Instance not found"}, "instance-not-found",
     ["instance ID and the instance token", "Instance not found"]),
    (401, {"error": "Token not found for this instance"}, "instance-not-found",
     ["instance ID and the instance token"]),
    (405, {"error": "Method Not Allowed"}, "method-not-allowed", ["HTTP 405"]),
    (415, {"error": "Unsupported Media Type"}, "unsupported-media-type", ["HTTP 415"]),
    (400, {"error": "value must be an https URL"}, "bad-request",
     ["HTTP 400", "value must be an https URL"]),
    (422, "<html><body>no</body></html>", "bad-request", ["HTTP 422", "<html><body>no</body>"]),
    (200, {"value": False}, "value-false", ["did not confirm the change"]),
    (200, {}, "value-false", ["did not confirm the change"]),
    (200, "OK", "unexpected", ["does not understand", "HTTP 200"]),
    (200, ["value", True], "unexpected", ["does not understand"]),
    (204, "", "unexpected", ["does not understand", "HTTP 204"]),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "reason", "phrases"), REFUSALS)
def test_each_refusal_has_its_reason_and_is_not_retried(
    httpserver, zapi, sleeps, status, body, reason, phrases
):
    data = body if isinstance(body, str) else json.dumps(body)
    kind = "text/html" if isinstance(body, str) else "application/json"
    httpserver.expect_request(DELIVERY, method="PUT").respond_with_data(
        data, status, None, None, kind
    )

    error = fail(lambda: zapi.set_webhook("delivery", HOOK))

    assert error.reason == reason
    for phrase in phrases:
        assert phrase in str(error)
    assert len(httpserver.log) == 1
    assert sleeps == []


def test_zapi_error_text_is_cut_to_300_characters_on_one_line(httpserver, zapi):
    text = "bad\n value " + "x" * 1000
    httpserver.expect_request(DELIVERY).respond_with_json({"error": text}, status=400)

    error = fail(lambda: zapi.set_webhook("delivery", HOOK))

    assert error.reason == "bad-request"
    assert len(error.params["detail"]) == 300
    assert error.params["detail"].startswith("bad value xxx")


def test_zapi_echoing_the_token_url_is_redacted(httpserver, zapi):
    echoed = f"No route for PUT {PREFIX}/update-webhook-delivery"
    httpserver.expect_request(DELIVERY).respond_with_json({"message": echoed}, status=400)

    error = fail(lambda: zapi.set_webhook("delivery", HOOK))

    assert error.reason == "bad-request"
    assert "/token/<secret>/update-webhook-delivery" in str(error)


# 3. Retries on Z-API's own errors


def test_server_errors_are_retried_with_exponential_back_off(httpserver, zapi, sleeps):
    for _ in range(2):
        httpserver.expect_oneshot_request(DELIVERY).respond_with_json({"error": "oops"}, 500)
    httpserver.expect_oneshot_request(DELIVERY).respond_with_json({"value": True})

    zapi.set_webhook("delivery", HOOK)

    assert [response.status_code for _, response in httpserver.log] == [500, 500, 200]
    assert sleeps == [0.01, 0.02]


def test_persistent_server_errors_give_up_after_the_last_attempt(httpserver, zapi, sleeps):
    httpserver.expect_request(DELIVERY).respond_with_json({"error": "oops"}, status=503)

    error = fail(lambda: zapi.set_webhook("delivery", HOOK))

    assert error.reason == "server-error"
    assert "HTTP 503" in str(error)
    assert "3 tries" in str(error)
    assert len(httpserver.log) == 3
    assert sleeps == [0.01, 0.02]


# 4. Redirects are never followed


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirect_is_not_followed(httpserver, zapi, status):
    elsewhere = HTTPServer(host="127.0.0.1", port=0)
    elsewhere.start()
    try:
        elsewhere.expect_request(DELIVERY).respond_with_json({"value": True})
        location = elsewhere.url_for(DELIVERY)
        httpserver.expect_request(DELIVERY).respond_with_response(
            Response(status=status, headers={"Location": location})
        )

        error = fail(lambda: zapi.set_webhook("delivery", HOOK))

        assert error.reason == "redirect"
        assert str(error) == (
            "Z-API answered with a redirect to another address; it was not followed."
        )
        assert len(httpserver.log) == 1
        assert elsewhere.log == []
    finally:
        elsewhere.clear()
        if elsewhere.is_running():
            elsewhere.stop()


# 5. A server that never answers


class SilentServer:
    """Accepts connections and reads requests but never answers them."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections.append(connection)

    def close(self):
        self.stopping.set()
        self.thread.join()
        for connection in self.connections:
            connection.close()
        self.listener.close()


def test_a_hung_server_is_a_timeout_after_each_attempt(sleeps):
    silent = SilentServer()
    try:
        client = make_client(f"http://127.0.0.1:{silent.port}", read_timeout=1, attempts=2)

        error = fail(lambda: client.set_webhook("delivery", HOOK))

        assert error.reason == "timeout"
        assert "did not answer within 1 seconds" in str(error)
        assert error.params["seconds"] == 1
        assert len(silent.connections) == 2
        assert sleeps == [0.01]
    finally:
        silent.close()


# 6. Nobody there, and no such name


def test_a_refused_connection_is_unreachable(sleeps):
    # Bound but not listening: the kernel refuses connections, and the port stays ours.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = make_client(f"http://127.0.0.1:{port}")

        error = fail(lambda: client.set_webhook("delivery", HOOK))

    assert error.reason == "unreachable"
    assert f"127.0.0.1:{port}" in str(error)
    assert sleeps == [0.01, 0.02]


def test_a_name_that_does_not_resolve_is_a_dns_failure(sleeps):
    client = make_client("http://nonexistent.invalid")

    error = fail(lambda: client.set_webhook("delivery", HOOK))

    assert error.reason == "dns"
    assert "nonexistent.invalid" in str(error)
    assert sleeps == [0.01, 0.02]


# 7. Reading the instance


def test_me_returns_only_the_whitelisted_keys(httpserver, zapi):
    body = {
        "id": INSTANCE,
        "token": TOKEN,
        "name": "My instance",
        "connected": True,
        "deliveryCallbackUrl": HOOK,
        "messageStatusCallbackUrl": "",
        "receivedCallbackUrl": "https://elsewhere.example.com/r",
        "connectedCallbackUrl": HOOK,
        "disconnectedCallbackUrl": "  ",
        "presenceChatCallbackUrl": "https://elsewhere.example.com/p",
        "receiveCallbackSentByMe": True,
        "initialDataCallbackUrl": "",
        "proxyUrl": "socks5://user:senha123@localhost:1080",
        "useProxy": True,
    }
    httpserver.expect_request(f"{PREFIX}/me", method="GET").respond_with_json(body)

    assert zapi.me() == {
        "deliveryCallbackUrl": HOOK,
        "messageStatusCallbackUrl": None,
        "receivedCallbackUrl": "https://elsewhere.example.com/r",
        "connectedCallbackUrl": HOOK,
        "disconnectedCallbackUrl": None,
        "presenceChatCallbackUrl": "https://elsewhere.example.com/p",
        "receiveCallbackSentByMe": True,
        "connected": True,
    }
    (request, _), *_ = httpserver.log
    assert request.headers["Client-Token"] == CLIENT_TOKEN


def test_me_tolerates_missing_and_odd_fields(httpserver, zapi):
    httpserver.expect_request(f"{PREFIX}/me").respond_with_json(
        {"connected": "yes", "deliveryCallbackUrl": 7, "receiveCallbackSentByMe": "true"}
    )

    found = zapi.me()

    assert set(found.values()) == {None}
    assert "deliveryCallbackUrl" in found and "receiveCallbackSentByMe" in found


def test_me_failures_use_the_same_reasons(httpserver, zapi):
    httpserver.expect_request(f"{PREFIX}/me").respond_with_json(
        {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, status=403
    )

    assert fail(zapi.me).reason == "client-token-wrong"
    assert len(httpserver.log) == 1


def test_status_parses_the_documented_body(httpserver, zapi):
    httpserver.expect_request(f"{PREFIX}/status", method="GET").respond_with_json(
        {"connected": True, "error": "You are already connected", "smartphoneConnected": True}
    )

    assert zapi.status() == {
        "connected": True,
        "smartphoneConnected": True,
        "error": "You are already connected",
    }


def test_status_of_a_disconnected_instance(httpserver, zapi):
    httpserver.expect_request(f"{PREFIX}/status").respond_with_json(
        {"connected": False, "error": "You are not connected", "smartphoneConnected": False}
    )

    assert zapi.status() == {
        "connected": False,
        "smartphoneConnected": False,
        "error": "You are not connected",
    }


# 8. Secrets in logs (every test above also checks its DEBUG logs via the autouse fixture)


def test_urllib3_debug_lines_name_the_endpoint_but_not_the_token(httpserver, zapi, caplog):
    httpserver.expect_request(DELIVERY).respond_with_json({"value": True})

    zapi.set_webhook("delivery", HOOK)

    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    # urllib3 does log the request line; it must arrive redacted, not be missing.
    assert any("/token/<secret>/update-webhook-delivery" in line for line in urllib3_lines)
    ours = [r.getMessage() for r in caplog.records if r.name == "dashboard.zapi"]
    assert ours == ["Z-API PUT update-webhook-delivery -> 200"]
    assert HOOK not in caplog.text


def test_failures_log_the_reason_without_the_url(sleeps, caplog):
    client = make_client("http://nonexistent.invalid", attempts=1)

    fail(lambda: client.set_webhook("delivery", HOOK))

    ours = [r.getMessage() for r in caplog.records if r.name == "dashboard.zapi"]
    assert ours == ["Z-API PUT update-webhook-delivery -> dns"]
