"""Why the live socket would be refused: GET /api/live/check, and that the handshake agrees."""

from urllib.parse import urlsplit

import pytest

from dashboard import create_app, live
from dashboard.extensions import db, hub

from .support import english_client, make_user, sign_in, signed_in_client

CHECK = "/api/live/check"
# What a browser sends to open the live socket; the refusals come before any upgrade.
HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
BAD_ORIGIN_MESSAGE = (
    "origin: Send the page's origin, such as https://dashboard.example.com: http or https, "
    "a host and an optional port, nothing more."
)
# The test client's requests arrive at http://localhost.
SITE = "http://localhost"
BAD_ORIGINS = [
    "",
    "null",
    "localhost",
    "//localhost",
    "http://",
    "http://localhost/",
    "http://localhost/feed",
    "http://localhost?x=1",
    "http://localhost#top",
    "http://ana@localhost",
    "http://localhost:99999",
    "http://localhost:",
    "ftp://localhost",
    "javascript:alert(1)",
    "http://local host",
    "http://localhost\n",
    'http://"><script>alert(1)</script>',
    "http://\u212aelvin.example",  # the Kelvin sign folds to "k": no ASCII host
    "http://" + "a" * 300,
]


@pytest.fixture
def make_app(tmp_path):
    """Builds an app with extra settings on a fresh data dir; its database is closed after."""

    def make(**settings):
        return create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), **settings})

    yield make
    db.engine.dispose()


@pytest.fixture
def taken_places():
    """Registers sockets in this process's hub, as open live feeds do; all leave after."""
    subscribers = []

    def take(count: int = 1):
        subscribers.extend(hub.subscribe() for _ in range(count))

    yield take
    for subscriber in subscribers:
        hub.unsubscribe(subscriber)


def check(client, origin: str, **headers):
    return client.get(CHECK, query_string={"origin": origin}, headers=headers)


def handshake(client, origin: str, **headers):
    return client.get("/ws/deliveries", headers={**HANDSHAKE, "Origin": origin, **headers})


def test_signed_out_the_check_answers_401_json(app, client):
    response = check(client, SITE)
    assert response.status_code == 401
    assert response.is_json
    assert "Sign in first" in response.json["error"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_page_of_this_site_would_get_its_socket(app):
    response = check(signed_in_client(app), SITE)
    assert response.status_code == 200
    assert response.json == {"ok": True}


def test_origins_differing_only_in_case_are_the_same_origin(app):
    assert check(signed_in_client(app), "HTTP://LocalHost").json == {"ok": True}


def test_an_https_page_on_an_app_that_sees_http_is_told_about_trusted_proxies(app):
    response = check(signed_in_client(app), "https://localhost")
    assert response.status_code == 200
    assert response.json["ok"] is False
    assert response.json["reason"] == "origin"
    assert response.json["error"] == (
        "This page is at https://localhost but the dashboard sees its requests as "
        "http://localhost. Behind a reverse proxy, set DASHBOARD_TRUSTED_PROXIES=1 "
        "(the number of proxies) and restart."
    )


def test_with_trusted_proxies_set_the_message_names_the_forwarded_headers(make_app):
    app = make_app(TRUSTED_PROXIES=1)
    client = signed_in_client(app)
    forwarded = {"X-Forwarded-Proto": "https"}
    assert check(client, "https://localhost", **forwarded).json == {"ok": True}

    response = check(client, SITE, **forwarded)
    assert response.json["reason"] == "origin"
    assert response.json["error"].startswith(
        "This page is at http://localhost but the dashboard sees its requests as "
        "https://localhost. DASHBOARD_TRUSTED_PROXIES is 1:"
    )
    assert "X-Forwarded-Proto" in response.json["error"]


def test_a_foreign_site_is_refused_for_its_origin(app):
    response = check(signed_in_client(app), "https://evil.example")
    assert response.json["reason"] == "origin"
    assert "https://evil.example" in response.json["error"]


def test_a_full_worker_is_named_with_its_setting(make_app, taken_places):
    app = make_app(SOCKETS_PER_WORKER=2)
    client = signed_in_client(app)
    taken_places(1)
    assert check(client, SITE).json == {"ok": True}

    taken_places(1)
    response = check(client, SITE)
    assert response.json == {
        "ok": False,
        "reason": "full",
        "error": "All live feeds of this server are in use (2 per worker). Close other tabs "
        "of the dashboard, or raise DASHBOARD_SOCKETS_PER_WORKER (and --threads) and restart.",
    }
    # The origin is judged first, as the handshake does.
    assert check(client, "https://localhost").json["reason"] == "origin"


@pytest.mark.parametrize("origin", BAD_ORIGINS)
def test_an_origin_that_is_no_plain_origin_is_a_400_naming_the_parameter(app, origin):
    response = check(signed_in_client(app), origin)
    assert response.status_code == 400
    assert response.is_json
    # Always the same words: what to send instead, never the value sent.
    assert response.json == {"error": BAD_ORIGIN_MESSAGE, "parameter": "origin"}


def test_a_missing_origin_is_a_400_naming_the_parameter(app):
    response = signed_in_client(app).get(CHECK)
    assert response.status_code == 400
    assert response.json == {"error": BAD_ORIGIN_MESSAGE, "parameter": "origin"}


def test_the_message_is_in_the_readers_language(app):
    make_user("ana", "admin")
    portuguese = app.test_client()  # no Accept-Language: the site's Portuguese
    sign_in(portuguese, "ana")
    response = check(portuguese, "https://localhost")
    assert response.json["reason"] == "origin"
    assert response.json["error"].startswith("Esta página está em https://localhost")
    assert "DASHBOARD_TRUSTED_PROXIES=1" in response.json["error"]
    page = portuguese.get("/").get_data(as_text=True)
    assert 'data-text-refused="Feed ao vivo recusado"' in page
    assert 'role="alert" data-refused-banner hidden' in page


@pytest.mark.parametrize(
    ("settings", "taken", "origin", "forwarded"),
    [
        ({}, 0, "https://localhost", {}),
        ({}, 0, "http://evil.example", {}),
        ({}, 0, "null", {}),
        ({"SOCKETS_PER_WORKER": 1}, 1, SITE, {}),
        ({"SOCKETS_PER_WORKER": 1}, 1, "https://localhost", {}),
        ({"TRUSTED_PROXIES": 1}, 0, SITE, {"X-Forwarded-Proto": "https"}),
    ],
)
def test_the_handshake_refuses_exactly_what_the_check_reports(
    make_app, taken_places, settings, taken, origin, forwarded
):
    app = make_app(**settings)
    client = signed_in_client(app)
    taken_places(taken)
    refused = handshake(client, origin, **forwarded)
    assert refused.status_code == {"origin": 403, "full": 503}[refused_reason(refused)]
    if live.plain_origin(origin) is None:
        # No page origin to name: the check refuses the parameter, the handshake the socket.
        assert check(client, origin).status_code == 400
        assert refused.json["error"] == "This socket only accepts pages of this site."
        return
    verdict = check(client, origin, **forwarded).json
    assert verdict["ok"] is False
    assert verdict["reason"] == refused_reason(refused)
    assert verdict["error"] == refused.json["error"]  # one message, in the same words


def refused_reason(response) -> str:
    return {403: "origin", 503: "full"}[response.status_code]


def test_signed_out_both_the_handshake_and_the_check_answer_401(app):
    client = english_client(app)
    assert handshake(client, SITE).status_code == 401
    assert check(client, SITE).status_code == 401


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://dashboard.example.com", "https://dashboard.example.com"),
        ("HTTP://Dashboard.Example.COM:8443", "http://dashboard.example.com:8443"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://xn--painel-9wa.example", "https://xn--painel-9wa.example"),
        (None, None),
        *[(bad, None) for bad in BAD_ORIGINS],
    ],
)
def test_plain_origin(text, expected):
    assert live.plain_origin(text) == expected


def test_refusal_judges_the_origin_before_the_places():
    accepted = {"https://dashboard.example.com"}
    assert live.refusal("https://dashboard.example.com", accepted, 63, 64) is None
    assert live.refusal("https://dashboard.example.com", accepted, 64, 64) == live.FULL
    assert live.refusal("http://dashboard.example.com", accepted, 64, 64) == live.FOREIGN_ORIGIN
    assert live.refusal(None, accepted, 0, 64) == live.FOREIGN_ORIGIN


# With DASHBOARD_PUBLIC_URL set, sockets come only from pages at its origin.
PUBLIC = "https://dash.example.com"
FOREIGN_PAGE = "http://evil.example"


def at_host(client, host: str) -> dict[str, str]:
    """The Host header of a request at ``host``; the client's session goes there too."""
    # The test client only sends a cookie back to the host it is for.
    name = urlsplit(f"//{host}").hostname
    client.set_cookie("session", client.get_cookie("session").value, domain=name)
    return {"Host": host}


@pytest.fixture
def public_app(make_app):
    return make_app(PUBLIC_URL=PUBLIC)


def test_a_page_at_the_public_url_gets_its_socket_whatever_the_host(public_app):
    client = signed_in_client(public_app)
    assert check(client, PUBLIC).json == {"ok": True}
    # A page on a name the attacker rebinds to this server: its requests carry its own Host.
    assert check(client, PUBLIC, **at_host(client, "evil.example")).json == {"ok": True}


def test_a_forged_host_no_longer_vouches_for_its_page(public_app):
    client = signed_in_client(public_app)
    rebound = at_host(client, "evil.example")
    verdict = check(client, FOREIGN_PAGE, **rebound).json
    assert verdict == {
        "ok": False,
        "reason": "origin",
        "error": "This page is at http://evil.example, but the live feed only accepts pages "
        "at https://dash.example.com (DASHBOARD_PUBLIC_URL). Open the dashboard there, or "
        "correct DASHBOARD_PUBLIC_URL and restart.",
    }
    refused = handshake(client, FOREIGN_PAGE, **rebound)
    assert refused.status_code == 403
    assert refused.json["error"] == verdict["error"]


def test_without_a_public_url_the_served_origin_is_accepted(make_app):
    client = signed_in_client(make_app())
    assert check(client, FOREIGN_PAGE, **at_host(client, "evil.example")).json == {"ok": True}


@pytest.mark.parametrize(
    ("public_url", "page"),
    [
        ("https://Dash.Example.com:443", PUBLIC),  # browsers leave the default port out
        ("https://dash.example.com:8443", "https://dash.example.com:8443"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
    ],
)
def test_the_public_urls_origin_is_written_as_browsers_do(make_app, public_url, page):
    client = signed_in_client(make_app(PUBLIC_URL=public_url))
    assert check(client, page).json == {"ok": True}
    if page != PUBLIC:
        assert check(client, PUBLIC).json["reason"] == "origin"


@pytest.mark.parametrize(
    ("host", "client_address", "accepted"),
    [
        ("127.0.0.1:8000", "127.0.0.1", True),  # the admin on the machine, or a tunnel
        ("localhost:8000", "127.0.0.1", True),
        ("[::1]:8000", "::1", True),
        ("127.0.0.1:8000", "203.0.113.9", False),  # a loopback Host from elsewhere
        ("192.0.2.10:8000", "127.0.0.1", False),  # not a loopback address
    ],
)
def test_the_served_origin_counts_only_on_loopback_from_this_machine(
    public_app, host, client_address, accepted
):
    client = signed_in_client(public_app)
    page = f"http://{host}"
    answer = client.get(
        CHECK,
        query_string={"origin": page},
        headers=at_host(client, host),
        environ_overrides={"REMOTE_ADDR": client_address},
    )
    assert answer.json["ok"] is accepted


def test_a_proxy_forwarding_a_loopback_host_is_not_this_machine(make_app):
    client = signed_in_client(make_app(PUBLIC_URL=PUBLIC, TRUSTED_PROXIES=1))
    forwarded = {"X-Forwarded-Host": "127.0.0.1:8000", "X-Forwarded-For": "203.0.113.9"}
    assert check(client, "http://127.0.0.1:8000", **forwarded).json["reason"] == "origin"
    assert check(client, PUBLIC, **forwarded).json == {"ok": True}
