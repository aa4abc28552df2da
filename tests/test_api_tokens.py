"""Personal API tokens: created on the account page, shown once, stored hashed, revocable."""

import hashlib
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from dashboard.accounts import tokens as api_tokens
from dashboard.accounts import users as accounts
from dashboard.extensions import db
from dashboard.models import ApiToken

from .support import SEED, csrf_token, english_client, make_user, sign_in, store

SECRET = re.compile(r'value="(zd_[A-Za-z0-9_-]{40,})"')


def create_on_page(client, name: str = "CRM sync"):
    """Create a token through the account page's form; return the response."""
    token = csrf_token(client.get("/account").get_data(as_text=True))
    return client.post("/account/tokens", data={"csrf_token": token, "name": name})


def secret_of(response) -> str:
    """The token shown on the page after creating it."""
    found = SECRET.search(response.get_data(as_text=True))
    assert found, "the page shows no new token"
    return found.group(1)


def bearer(secret: str) -> dict:
    """The header that signs a request in with ``secret``."""
    return {"Authorization": f"Bearer {secret}"}


def tokens_of(username: str) -> list[ApiToken]:
    """The stored tokens of a user."""
    with db.reading() as transaction:
        user = accounts.find_user(transaction, username)
        return api_tokens.for_user(transaction, user.id)


def add_token(username: str, name: str = "script") -> str:
    """Create a token straight through the domain; return its secret."""
    with db.writing() as transaction:
        _token, secret = api_tokens.create(
            transaction, accounts.find_user(transaction, username), name
        )
    return secret


def test_new_token_is_shown_once_and_opens_the_api(app, admin_client):
    store(SEED)
    response = create_on_page(admin_client)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    secret = secret_of(response)
    assert "it will not be shown again" in page
    assert response.headers["Cache-Control"] == "no-store"
    # Not in a cookie, not in the session (no flash), not on the next view of the page.
    assert all(secret not in cookie for cookie in response.headers.getlist("Set-Cookie"))
    with admin_client.session_transaction() as session:
        assert secret not in repr(dict(session))
    again = admin_client.get("/account").get_data(as_text=True)
    assert secret not in again
    assert "CRM sync" in again
    assert f"••••{secret[-4:]}" in again

    anonymous = app.test_client()
    listing = anonymous.get("/api/deliveries", headers=bearer(secret))
    assert listing.status_code == 200
    assert len(listing.json["items"]) == 1
    # The token signs in this request only: no session cookie comes back.
    assert "Set-Cookie" not in listing.headers
    assert anonymous.get("/api/deliveries").status_code == 401


@pytest.mark.sqlite_only
def test_token_is_stored_only_as_its_hash(app, admin_client):
    secret = secret_of(create_on_page(admin_client))
    (token,) = tokens_of("ana")
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.hint == secret[-4:]
    db.engine.dispose()  # close connections so every page is in the files
    data_dir = Path(app.config["DATA_DIR"])
    files = [path for path in data_dir.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".sqlite3") for path in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"{path.name} holds the plain token"


def test_revoked_token_stops_at_once(app, admin_client):
    secret = secret_of(create_on_page(admin_client))
    script = english_client(app)
    assert script.get("/api/deliveries", headers=bearer(secret)).status_code == 200
    (token,) = tokens_of("ana")
    page = admin_client.get("/account").get_data(as_text=True)
    revoked = admin_client.post(
        f"/account/tokens/{token.id}/revoke",
        data={"csrf_token": csrf_token(page)},
        follow_redirects=True,
    )
    assert revoked.status_code == 200
    assert 'role="status">API token revoked.' in revoked.get_data(as_text=True)
    refused = script.get("/api/deliveries", headers=bearer(secret))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert "not valid" in refused.json["error"]
    assert tokens_of("ana") == []


def test_disabled_users_token_stops_working(app, client):
    make_user("ana", "admin")
    make_user("vera", "viewer")
    secret = add_token("vera")
    assert client.get("/api/deliveries", headers=bearer(secret)).status_code == 200
    with db.writing() as transaction:
        accounts.set_active(transaction, accounts.find_user(transaction, "vera"), False)
    assert client.get("/api/deliveries", headers=bearer(secret)).status_code == 401


def test_nobody_revokes_another_users_token(app, admin_client):
    make_user("vera", "viewer")
    secret = add_token("vera", "vera-zapier")
    (token,) = tokens_of("vera")
    page = admin_client.get("/account").get_data(as_text=True)
    response = admin_client.post(
        f"/account/tokens/{token.id}/revoke", data={"csrf_token": csrf_token(page)}
    )
    assert response.status_code == 404
    assert app.test_client().get("/api/deliveries", headers=bearer(secret)).status_code == 200
    assert "vera-zapier" not in page  # nor sees it listed


@pytest.mark.parametrize("path", ["/", "/settings", "/account", "/users", "/search"])
def test_token_opens_no_page(app, client, path):
    make_user("ana", "admin")
    response = client.get(path, headers=bearer(add_token("ana")))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_token_opens_no_live_socket(app, client):
    make_user("ana", "admin")
    handshake = {
        **bearer(add_token("ana")),
        "Origin": "http://localhost",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    response = client.get("/ws/deliveries", headers=handshake)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic YW5hOnB3", "Token zd_abc", "Bearer zd_not-a-real-token", "zd_x"],
)
def test_malformed_or_unknown_token_gets_401_json(app, client, header):
    make_user("ana", "admin")
    add_token("ana")
    response = client.get("/api/deliveries", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert "Authorization: Bearer" in response.json["error"]


def test_last_use_is_recorded_at_most_once_a_minute(app, client):
    make_user("ana", "admin")
    secret = add_token("ana")
    assert tokens_of("ana")[0].last_used_at is None
    client.get("/api/deliveries", headers=bearer(secret))
    first = tokens_of("ana")[0].last_used_at
    assert first is not None
    client.get("/api/deliveries", headers=bearer(secret))
    assert tokens_of("ana")[0].last_used_at == first
    with db.writing() as transaction:
        transaction.execute(update(ApiToken).values(last_used_at=first - timedelta(minutes=2)))
    client.get("/api/deliveries", headers=bearer(secret))
    assert tokens_of("ana")[0].last_used_at > first


def test_forms_need_their_csrf_token(app, admin_client):
    secret = add_token("ana")
    (token,) = tokens_of("ana")
    created = admin_client.post("/account/tokens", data={"name": "no csrf"})
    assert created.status_code == 400
    revoked = admin_client.post(f"/account/tokens/{token.id}/revoke", data={})
    assert revoked.status_code == 400
    assert [row.name for row in tokens_of("ana")] == ["script"]
    assert app.test_client().get("/api/deliveries", headers=bearer(secret)).status_code == 200


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\there"])
def test_token_needs_a_sensible_name(admin_client, name):
    response = create_on_page(admin_client, name)
    assert response.status_code == 400
    assert 'role="alert"' in response.get_data(as_text=True)
    assert not SECRET.search(response.get_data(as_text=True))
    assert tokens_of("ana") == []


def test_tokens_per_user_are_capped(admin_client):
    for number in range(api_tokens.MAX_TOKENS_PER_USER):
        add_token("ana", f"script {number}")
    response = create_on_page(admin_client, "one too many")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(r'role="alert">\s*<li>You already have 20 API tokens', page)
    assert len(tokens_of("ana")) == api_tokens.MAX_TOKENS_PER_USER


def test_a_session_still_signs_in_the_api_next_to_tokens(app, client):
    make_user("ana", "admin")
    add_token("ana")
    sign_in(client, "ana")
    assert client.get("/api/deliveries").status_code == 200


def test_revoking_an_unknown_or_odd_id_is_not_found(admin_client):
    token = csrf_token(admin_client.get("/account").get_data(as_text=True))
    for token_id in ("999", "2147483648", "9" * 40):
        response = admin_client.post(
            f"/account/tokens/{token_id}/revoke", data={"csrf_token": token}
        )
        assert response.status_code == 404
