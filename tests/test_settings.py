"""The Z-API settings page against a real local HTTP server standing in for Z-API."""

import html
import json
import logging
import re
import threading
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Response

from dashboard import zapi as zapi_module
from dashboard.extensions import db, vault
from dashboard.models import SettingsChange
from dashboard.settings import store as settings
from dashboard.settings import webhooks as webhook_setup

from .support import csrf_token, database_bytes, free_port, secret_forms

INSTANCE_ID = "3C9E1A2B4D5F60718293A4B5C6D7E8F9"
INSTANCE_TOKEN = "A1B2C3D4E5F6A7B8C9D0E1F2"
CLIENT_TOKEN = "F0123456789abcdefABCDEF0123456789"
PUBLIC_URL = "https://dash.example.com"
PATH = f"/instances/{INSTANCE_ID}/token/{INSTANCE_TOKEN}"
# What "Save and apply" calls, in this order (zapi-reference.md, section 2).
WEBHOOKS = [
    "update-webhook-delivery",
    "update-webhook-message-status",
    "update-webhook-received",
    "update-notify-sent-by-me",  # only works once the received URL is set
    "update-webhook-connected",
    "update-webhook-disconnected",
]
PRESENCE = "update-webhook-chat-presence"
# Every endpoint that changes a setting, for a fake Z-API that answers them all alike.
UPDATES = re.compile(rf"{re.escape(PATH)}/update-[a-z-]+")
ACCEPTED = (
    "Z-API accepted the webhook address for every kind (on send, message status, on receive, "
    "on connect, on disconnect) and sends the messages sent from the phone there too."
)


def submit(client, action="apply", **overrides):
    fields = {
        "instance_id": INSTANCE_ID,
        "instance_token": INSTANCE_TOKEN,
        "client_token": CLIENT_TOKEN,
        "public_url": PUBLIC_URL,
        **overrides,
    }
    token = csrf_token(client.get("/settings").get_data(as_text=True))
    return client.post(
        "/settings",
        data={"csrf_token": token, "action": action, **fields},
        follow_redirects=True,
    )


def post_button(client, path):
    token = csrf_token(client.get("/settings").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token}, follow_redirects=True)


def webhook_url(app):
    return f"{PUBLIC_URL}/webhooks/{app.config['WEBHOOK_TOKEN']}"


def accept(httpserver, app, *endpoints):
    """Have the fake Z-API accept exactly the documented request at each of ``endpoints``."""
    for endpoint in endpoints:
        body = (
            {"notifySentByMe": True}
            if endpoint == "update-notify-sent-by-me"
            else {"value": webhook_url(app)}
        )
        httpserver.expect_request(
            f"{PATH}/{endpoint}",
            method="PUT",
            headers={"Client-Token": CLIENT_TOKEN, "Content-Type": "application/json"},
            json=body,
        ).respond_with_json({"value": True})


def called(httpserver):
    """The endpoints the fake Z-API was asked, in order."""
    return [request.path.rsplit("/", 1)[1] for request, _ in httpserver.log]


def flashed(page):
    """The text of the page's flashed messages."""
    return [html.unescape(text) for text in re.findall(r'class="flash[^"]*"[^>]*>([^<]*)<', page)]


@pytest.fixture
def no_backoff(monkeypatch):
    """Retries go on at once: the back-off is the client's business, tested in test_zapi."""
    monkeypatch.setattr(zapi_module, "time", SimpleNamespace(sleep=lambda seconds: None))


def audit():
    with db.reading() as session:
        return session.scalars(select(SettingsChange).order_by(SettingsChange.id)).all()


def test_only_admins_open_settings(viewer_client):
    assert viewer_client.get("/settings").status_code == 403


def test_apply_sets_every_webhook_in_order_with_the_documented_requests(
    app, zapi_admin, httpserver
):
    accept(httpserver, app, *WEBHOOKS, PRESENCE)
    page = submit(zapi_admin).get_data(as_text=True)
    httpserver.check_assertions()  # every request matched its documented body and headers
    assert called(httpserver) == WEBHOOKS  # chat presence was not asked for
    assert flashed(page) == [f"{ACCEPTED} Waiting for the first callback."]
    assert "Waiting for the first callback" in page
    assert [(c.action, c.succeeded) for c in audit()] == [("save", True), ("apply", True)]
    assert audit()[-1].outcome == flashed(page)[0]


def test_chat_presence_is_set_last_and_only_when_ticked(app, zapi_admin, httpserver):
    accept(httpserver, app, *WEBHOOKS, PRESENCE)
    page = submit(zapi_admin, set_chat_presence="y").get_data(as_text=True)
    assert called(httpserver) == [*WEBHOOKS, PRESENCE]
    assert "on disconnect, chat presence) and sends" in flashed(page)[0]
    assert re.search(r'<input checked[^>]*name="set_chat_presence"', page)
    with db.reading() as session:
        assert settings.load(session).set_chat_presence is True

    httpserver.clear_log()
    page = submit(zapi_admin).get_data(as_text=True)  # unticked: presence is left alone
    assert called(httpserver) == WEBHOOKS
    assert not re.search(r'<input checked[^>]*name="set_chat_presence"', page)
    with db.reading() as session:
        assert settings.load(session).set_chat_presence is False


@pytest.mark.parametrize(
    ("endpoint", "status", "body", "kind", "reason"),
    [
        ("update-webhook-connected", 400, {"error": "value is not a valid URL"}, "on connect",
         "Z-API rejected the request (HTTP 400). Z-API said: value is not a valid URL."),
        ("update-webhook-message-status", 500, {"error": "oops"}, "message status",
         "Z-API had a server error (HTTP 500) on each of 3 tries. Try again later."),
        ("update-webhook-disconnected", 200, {"value": False}, "on disconnect",
         "Z-API answered but did not confirm the change."),
        ("update-notify-sent-by-me", 400, {"error": "no"}, "notify sent by me",
         "Z-API rejected the request (HTTP 400). Z-API said: no."),
    ],
)  # fmt: skip
def test_one_failing_webhook_is_reported_and_the_others_still_set(
    app, zapi_admin, httpserver, no_backoff, endpoint, status, body, kind, reason
):
    httpserver.expect_request(f"{PATH}/{endpoint}").respond_with_json(body, status=status)
    accept(httpserver, app, *WEBHOOKS)
    page = submit(zapi_admin).get_data(as_text=True)
    retried = [endpoint] * 2 if status == 500 else []
    position = WEBHOOKS.index(endpoint)
    assert called(httpserver) == [*WEBHOOKS[:position], *retried, *WEBHOOKS[position:]]
    (message,) = flashed(page)
    assert 'class="flash flash-error" role="alert"' in page
    hooks = ["on send", "message status", "on receive", "on connect", "on disconnect"]
    accepted = ", ".join(hook for hook in hooks if hook != kind)
    assert message.startswith(f"Z-API accepted the webhook address for: {accepted}.")
    assert f"Not set: {kind}. {reason}" in message
    assert message.count("Not set") == 1 and "Not tried" not in message
    assert (audit()[-1].succeeded, audit()[-1].outcome) == (False, message)
    with db.reading() as session:
        assert settings.load(session).applied_at is not None  # callbacks may come now


def test_notify_sent_by_me_waits_for_the_received_webhook(app, zapi_admin, httpserver):
    httpserver.expect_request(f"{PATH}/update-webhook-received").respond_with_json(
        {"error": "value is not a valid URL"}, status=400
    )
    accept(httpserver, app, *WEBHOOKS)
    page = submit(zapi_admin).get_data(as_text=True)
    assert "update-notify-sent-by-me" not in called(httpserver)
    assert called(httpserver)[-2:] == ["update-webhook-connected", "update-webhook-disconnected"]
    (message,) = flashed(page)
    assert "Not set: on receive. Z-API rejected the request (HTTP 400)." in message
    assert message.endswith("Not tried: notify sent by me (it needs the on-receive webhook).")
    assert audit()[-1].outcome == message


def test_the_same_refusal_everywhere_is_said_once(zapi_admin, httpserver):
    httpserver.expect_request(UPDATES).respond_with_json(
        {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, status=403
    )
    page = submit(zapi_admin).get_data(as_text=True)
    assert len(httpserver.log) == 5  # each webhook tried once; notify-sent-by-me not at all
    (message,) = flashed(page)
    assert message.startswith(
        "Not set: on send, message status, on receive, on connect, on disconnect. "
        "Z-API did not accept the Client-Token (HTTP 403"
    )
    assert message.count("Not set") == 1
    with db.reading() as session:
        assert settings.load(session).applied_at is None


def test_an_unreachable_zapi_is_tried_for_the_first_webhook_only(
    app, zapi_admin, no_backoff, caplog
):
    caplog.set_level(logging.INFO, logger="dashboard.zapi")
    app.config["ZAPI_BASE_URL"] = f"http://127.0.0.1:{free_port()}"
    page = submit(zapi_admin).get_data(as_text=True)
    tried = [r.getMessage() for r in caplog.records if r.name == "dashboard.zapi"]
    assert tried == ["Z-API PUT update-webhook-delivery -> unreachable"] * 3
    (message,) = flashed(page)
    assert message.startswith("Not set: on send. Could not connect to 127.0.0.1:")
    assert message.endswith(
        "Not tried: message status, on receive, notify sent by me, on connect, on disconnect "
        "(Z-API could not be reached)."
    )


def test_a_refusal_is_explained_and_audited(zapi_admin, httpserver):
    httpserver.expect_request(UPDATES).respond_with_json(
        {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, status=403
    )
    page = submit(zapi_admin).get_data(as_text=True)
    assert 'class="flash flash-error" role="alert"' in page
    assert "Client-Token" in page
    assert CLIENT_TOKEN not in page
    assert audit()[-1].succeeded is False
    assert CLIENT_TOKEN not in audit()[-1].outcome


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("public_url", "http://dash.example.com", "https://"),
        ("public_url", "https://user:pw@dash.example.com", "user name or password"),
        ("public_url", "https://dash.example.com/?x=1", "? or #"),
        ("public_url", "https://", "host name"),
        ("public_url", 'https://dash.example.com/"><svg onload=alert(1)>', "no spaces, quotes"),
        ("public_url", "https://dash.example.com/a b", "no spaces, quotes"),
        ("public_url", "https://dash.example.com/it's", "no spaces, quotes"),
        ("public_url", "https://dash.example.com/<b>", "no spaces, quotes"),
        ("public_url", "https://dash.example.com/100%zz", "no spaces, quotes"),
        ("public_url", 'https://dash"x.example.com/', "letters, digits, dots"),
        ("public_url", "https://dash.example.com:99999", "not a valid URL"),
        ("instance_id", "not an id!", "letters and digits"),
        ("instance_token", "short", "letters and digits"),
        ("client_token", "has spaces in it 123", "letters and digits"),
    ],
)
def test_invalid_fields_send_nothing_to_zapi(zapi_admin, httpserver, field, value, message):
    page = submit(zapi_admin, **{field: value}).get_data(as_text=True)
    assert message in page
    assert 'role="alert"' in page
    assert httpserver.log == []
    assert audit() == []


def test_a_refused_address_is_shown_back_escaped(zapi_admin, httpserver):
    attack = 'https://dash.example.com/"><svg onload=alert(1)>'
    page = submit(zapi_admin, action="save", public_url=attack).get_data(as_text=True)
    assert "<svg" not in page
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;" in page
    assert audit() == []


def test_an_address_with_a_plain_path_is_kept(zapi_admin):
    address = "https://dash.example.com/zapi/dash-1_~.x%2A:@!$&()*+,;="
    page = submit(zapi_admin, action="save", public_url=address).get_data(as_text=True)
    assert "Settings saved." in page
    with db.reading() as session:
        assert settings.load(session).public_url == address


def test_secrets_are_masked_sealed_and_kept_when_left_empty(app, zapi_admin, httpserver):
    accept(httpserver, app, *WEBHOOKS)
    submit(zapi_admin, action="save")
    page = zapi_admin.get("/settings").get_data(as_text=True)
    assert "••••E1F2" in page and "••••6789" in page
    assert INSTANCE_TOKEN not in page and CLIENT_TOKEN not in page
    assert app.config["WEBHOOK_TOKEN"] not in page
    # Empty token fields keep what is stored: apply still sends the right path and header.
    submit(zapi_admin, instance_token="", client_token="")
    httpserver.check_assertions()  # each request had the documented path and Client-Token
    assert called(httpserver) == WEBHOOKS


def test_a_first_save_needs_the_instance_token(zapi_admin, httpserver):
    page = submit(zapi_admin, action="save", instance_token="").get_data(as_text=True)
    assert "Paste the instance token" in page
    assert audit() == []


def me_answer(**urls):
    """/me as Z-API answers it, with the instance token and a proxy password in it."""
    return {
        "id": INSTANCE_ID,
        "token": INSTANCE_TOKEN,
        "connected": True,
        "deliveryCallbackUrl": "",
        "messageStatusCallbackUrl": "",
        "receivedCallbackUrl": "",
        "connectedCallbackUrl": "",
        "disconnectedCallbackUrl": "",
        "presenceChatCallbackUrl": "",
        "receiveCallbackSentByMe": True,
        "initialDataCallbackUrl": "",
        "proxyUrl": "socks5://proxyuser:senha123@proxy.example.com:1080",
        "useProxy": True,
        **urls,
    }


def check_with(httpserver, client, me, connected=True):
    """Press "Check Z-API" against these /me and /status answers; the flashed message."""
    httpserver.expect_request(f"{PATH}/me", method="GET").respond_with_json(me)
    httpserver.expect_request(f"{PATH}/status", method="GET").respond_with_json(
        {"connected": connected, "smartphoneConnected": connected}
    )
    page = post_button(client, "/settings/check").get_data(as_text=True)
    for secret in (INSTANCE_TOKEN, "senha123", "proxyuser"):
        assert secret not in page
        assert all(secret not in change.outcome for change in audit())
    (message,) = flashed(page)
    return message


def test_check_finds_every_callback_here(app, zapi_admin, httpserver):
    submit(zapi_admin, action="save")
    ours = webhook_url(app)
    everything = {field: ours for field in me_answer() if field.endswith("CallbackUrl")}
    message = check_with(httpserver, zapi_admin, me_answer(**everything))
    assert message == (
        "Z-API sends every callback here (on send, message status, on receive, on connect, "
        "on disconnect), the messages sent from the phone included, and the instance is "
        "connected."
    )
    assert audit()[-1].succeeded is True


def test_check_says_which_callbacks_come_here_go_elsewhere_or_nowhere(app, zapi_admin, httpserver):
    submit(zapi_admin, action="save", set_chat_presence="y")
    ours = webhook_url(app)
    me = me_answer(
        deliveryCallbackUrl=ours,
        messageStatusCallbackUrl="https://other.example.com/hooks/0THERSECRETT0KEN/status",
        connectedCallbackUrl="https://user:pw1234567@third.example.net:8443/c?token=abcdefgh9",
        disconnectedCallbackUrl=ours,
        receiveCallbackSentByMe=False,
    )
    message = check_with(httpserver, zapi_admin, me)
    assert message == (
        "Z-API sends these callbacks here: on send, on disconnect. "
        "Z-API sends these callbacks to another address: message status (to "
        "other.example.com), on connect (to third.example.net:8443). "
        "No address is set in Z-API for: on receive, chat presence. "
        "Z-API does not send the messages sent from the phone (notify sent by me is off). "
        "Save and apply points them all here."
    )
    assert audit()[-1].succeeded is False
    assert audit()[-1].outcome == message
    assert "0THERSECRETT0KEN" not in message and "pw1234567" not in message


def test_check_explains_a_mismatch_and_a_disconnected_instance(zapi_admin, httpserver):
    submit(zapi_admin, action="save")
    me = me_answer(deliveryCallbackUrl="https://elsewhere.example.com/hook")
    message = check_with(httpserver, zapi_admin, me, connected=False)
    assert "another address: on send (to elsewhere.example.com)" in message
    assert "chat presence" not in message  # not asked for, so not compared
    assert message.endswith("not connected to WhatsApp: open the Z-API panel and scan the QR code.")


def test_the_webhook_url_is_revealed_only_on_request(app, zapi_admin):
    submit(zapi_admin, action="save")
    token = csrf_token(zapi_admin.get("/settings").get_data(as_text=True))
    assert zapi_admin.post("/settings/webhook-url").status_code == 400  # no CSRF token
    revealed = zapi_admin.post("/settings/webhook-url", headers={"X-CSRFToken": token})
    assert revealed.json == {"url": webhook_url(app)}


def test_test_callback_to_an_unreachable_address_says_so(zapi_admin):
    submit(zapi_admin, action="save", public_url=f"https://127.0.0.1:{free_port()}")
    page = post_button(zapi_admin, "/settings/test").get_data(as_text=True)
    assert "cannot be reached" in page
    assert audit()[-1].action == "test" and audit()[-1].succeeded is False


def test_no_secret_in_logs_pages_json_or_database_files(app, zapi_admin, httpserver, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request(UPDATES).respond_with_json({"error": "null not allowed"}, status=400)
    httpserver.expect_request(f"{PATH}/me").respond_with_json(me_answer())
    httpserver.expect_request(f"{PATH}/status").respond_with_json({"connected": True})
    served = [submit(zapi_admin).get_data(as_text=True)]
    served.append(post_button(zapi_admin, "/settings/check").get_data(as_text=True))
    served.append(zapi_admin.get("/settings").get_data(as_text=True))
    served.append(json.dumps(zapi_admin.get("/api/status").json))
    stored = database_bytes(app.config["DATA_DIR"])
    # "werkzeug" records here are the fake Z-API server's own request log, not ours.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")
    assert "update-webhook-delivery" in logged
    for secret in (INSTANCE_TOKEN, CLIENT_TOKEN, app.config["WEBHOOK_TOKEN"]):
        for form in secret_forms(secret):
            assert form not in logged
            assert all(form not in text for text in served)
            assert form.encode() not in stored
    assert stored


def test_check_before_saving_asks_for_the_instance_first(zapi_admin, httpserver):
    page = post_button(zapi_admin, "/settings/check").get_data(as_text=True)
    assert "Save the instance ID and token first." in page
    assert httpserver.log == []


def test_tokens_sealed_with_another_key_are_asked_for_again(app, zapi_admin, httpserver):
    submit(zapi_admin, action="save")
    vault.init(Fernet.generate_key().decode())  # as if the data dir's key were lost
    try:
        page = post_button(zapi_admin, "/settings/check").get_data(as_text=True)
    finally:
        vault.init(app.config["SETTINGS_KEY"])
    assert "cannot be decrypted" in page
    assert httpserver.log == []


@pytest.fixture
def threaded_zapi(app):
    """A fake Z-API that answers each request in a thread of its own, so one can hang."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    app.config["ZAPI_BASE_URL"] = server.url_for("").rstrip("/")
    yield server
    server.clear()
    server.stop()


def test_a_hung_webhook_times_out_and_the_others_are_still_set(
    app, zapi_admin, threaded_zapi, no_backoff
):
    app.config["ZAPI_TIMEOUT_SECONDS"] = 0.3
    released = threading.Event()

    def hang(request):
        released.wait(5)  # far longer than the timeout; released at the end of the test
        return Response("{}", content_type="application/json")

    threaded_zapi.expect_request(f"{PATH}/update-webhook-received").respond_with_handler(hang)
    accept(threaded_zapi, app, *WEBHOOKS)
    try:
        page = submit(zapi_admin).get_data(as_text=True)
    finally:
        released.set()
    (message,) = flashed(page)
    assert message.startswith(
        "Z-API accepted the webhook address for: on send, message status, on connect, "
        "on disconnect. Not set: on receive. Z-API did not answer within 1 seconds (3 tries)."
    )
    assert message.endswith("Not tried: notify sent by me (it needs the on-receive webhook).")
    assert (audit()[-1].succeeded, audit()[-1].outcome) == (False, message)


def test_zapi_hanging_twice_in_a_row_leaves_the_rest_untried(
    app, zapi_admin, threaded_zapi, no_backoff, caplog
):
    caplog.set_level(logging.INFO, logger="dashboard.zapi")
    app.config["ZAPI_TIMEOUT_SECONDS"] = 0.3
    released = threading.Event()
    threaded_zapi.expect_request(UPDATES).respond_with_handler(
        lambda request: released.wait(5) and Response("{}", content_type="application/json")
    )
    try:
        page = submit(zapi_admin).get_data(as_text=True)
    finally:
        released.set()
    (message,) = flashed(page)
    assert message == (
        "Not set: on send, message status. Z-API did not answer within 1 seconds (3 tries). "
        "Check that this server can reach Z-API, or try again later. Not tried: on receive, "
        "notify sent by me, on connect, on disconnect (Z-API could not be reached)."
    )
    tried = [r.getMessage() for r in caplog.records if r.name == "dashboard.zapi"]
    assert tried == [
        *["Z-API PUT update-webhook-delivery -> timeout"] * 3,
        *["Z-API PUT update-webhook-message-status -> timeout"] * 3,
    ]


def test_a_redirect_is_not_followed(zapi_admin, httpserver):
    elsewhere = HTTPServer(host="127.0.0.1", port=free_port())
    elsewhere.start()
    try:
        httpserver.expect_request(UPDATES).respond_with_data(
            "", status=302, headers={"Location": elsewhere.url_for("/steal")}
        )
        page = submit(zapi_admin).get_data(as_text=True)
        assert "redirect" in page
        assert elsewhere.log == []
    finally:
        elsewhere.stop()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw1234567@Other.example.com:8443/hook/T0KEN?t=1", "other.example.com:8443"),
        ("https://[not-ipv6/hook", "?"),
        ("not a url", "?"),
        ("https://" + "a" * 300, "a" * 100),
    ],
)
def test_only_the_host_of_another_address_is_shown(url, shown):
    assert webhook_setup.host_of(url) == shown
