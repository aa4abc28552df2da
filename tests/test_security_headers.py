"""Headers, cookie flags, proxies and the plain-http warning."""

import pytest

from dashboard import create_app
from dashboard.extensions import db

from .support import SEED, make_user, post_json

PAGES = ("/login", "/healthz", "/static/style.css", "/nowhere")


@pytest.mark.parametrize("path", PAGES)
def test_every_response_carries_the_security_headers(client, path):
    headers = client.get(path).headers
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in headers


def test_https_gets_hsts_and_secure_cookies(app, client):
    make_user("ana")
    page = client.get("/login", base_url="https://dash.example.com")
    assert "max-age=" in page.headers["Strict-Transport-Security"]
    cookie = page.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_plain_http_cookies_are_not_secure_but_http_only(client):
    cookie = client.get("/login").headers["Set-Cookie"]
    assert "Secure" not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_plain_http_to_another_host_warns_but_signing_in_works(app, client):
    make_user("ana")
    lan = "http://192.168.0.10:8000"
    page = client.get("/login", base_url=lan).get_data(as_text=True)
    assert "This connection is not private" in page
    response = sign_in_at(client, lan)
    assert response.status_code == 302


def sign_in_at(client, base_url):
    from .support import PASSWORD, csrf_token

    token = csrf_token(client.get("/login", base_url=base_url).get_data(as_text=True))
    return client.post(
        "/login",
        base_url=base_url,
        data={"username": "ana", "password": PASSWORD, "csrf_token": token},
    )


def test_localhost_and_https_do_not_warn(client):
    for base_url in ("http://localhost:8000", "http://127.0.0.1", "https://dash.example.com"):
        page = client.get("/login", base_url=base_url).get_data(as_text=True)
        assert "This connection is not private" not in page


def test_trusted_proxy_headers_set_scheme_and_address(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "TRUSTED_PROXIES": 1})
    try:
        client = app.test_client()
        page = client.get(
            "/login",
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"},
        )
        assert "Strict-Transport-Security" in page.headers
        assert "Secure" in page.headers["Set-Cookie"]
    finally:
        db.engine.dispose()


def test_proxy_headers_are_ignored_without_trusted_proxies(client):
    page = client.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in page.headers


def test_error_pages_share_the_layout(admin_client):
    page = admin_client.get("/nowhere")
    assert page.status_code == 404
    text = page.get_data(as_text=True)
    assert 'class="site-header"' in text and 'role="alert"' in text


def test_no_inline_script_or_style_in_pages(admin_client):
    for path in ("/", "/users", "/account", "/nowhere"):
        text = admin_client.get(path).get_data(as_text=True)
        assert "<script>" not in text and "style=" not in text and "onclick" not in text


def test_the_webhook_opens_no_session_and_pages_do(app, client, webhook_path, monkeypatch):
    # Flask opens the session before it matches the URL: the path alone must tell.
    signers = []
    interface = type(app.session_interface)
    build = interface.get_signing_serializer
    monkeypatch.setattr(
        interface, "get_signing_serializer", lambda self, app: signers.append(1) or build(self, app)
    )
    assert post_json(client, webhook_path, SEED).status_code == 200
    assert signers == []
    assert "Set-Cookie" not in client.post(webhook_path, data="{").headers
    assert signers == []
    client.get("/login")
    assert signers
