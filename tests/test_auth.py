"""Sign in and out, sessions, and what needs a signed-in user."""

from flask import session as flask_session
from sqlalchemy import func, select

from dashboard.accounts import users as accounts
from dashboard.accounts.login import safe_next
from dashboard.extensions import db
from dashboard.models import UserSession

from .support import csrf_token, make_user, sign_in


def session_count():
    with db.reading() as transaction:
        return transaction.scalar(select(func.count()).select_from(UserSession))


def test_pages_need_a_signed_in_user(client):
    for path in ("/", "/users", "/account"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")


def test_public_routes_need_no_sign_in(client):
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_json_routes_answer_401_json_instead_of_redirecting(app, client):
    app.add_url_rule("/api/probe", "probe", lambda: {"ok": True})
    response = client.get("/api/probe")
    assert response.status_code == 401
    assert "Sign in" in response.json["error"]


def test_sign_in_lands_on_next_or_start_page(app, client):
    make_user("ana")
    response = sign_in(client, "Ana", next_path="/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    assert client.get("/account").status_code == 200


def test_next_must_stay_on_this_site(app, client):
    make_user("ana")
    response = sign_in(client, "ana", next_path="//evil.example.com/x")
    assert response.headers["Location"] == "/"


def test_safe_next_rejects_other_sites():
    assert safe_next("/search?phone=1") == "/search?phone=1"
    for target in (None, "", "https://evil.example", "//evil.example", "/\\evil.example", "x"):
        assert safe_next(target) is None


def test_wrong_user_and_wrong_password_get_the_same_message(app, client):
    make_user("ana")
    wrong_password = sign_in(client, "ana", "not the password").get_data(as_text=True)
    no_such_user = sign_in(client, "nobody", "not the password").get_data(as_text=True)
    for page in (wrong_password, no_such_user):
        assert "Wrong username or password." in page
        assert 'role="alert"' in page
    assert session_count() == 0


def test_disabled_user_cannot_sign_in_and_loses_open_sessions(app, client):
    user = make_user("ana")
    make_user("root", "admin")
    sign_in(client, "ana")
    assert client.get("/account").status_code == 200
    with db.writing() as transaction:
        accounts.set_active(transaction, transaction.merge(user), False)
    assert client.get("/account").status_code == 302
    assert "Wrong username or password." in sign_in(client, "ana").get_data(as_text=True)


def test_sign_in_starts_a_new_session(app, client):
    make_user("ana")
    client.get("/login")
    with client.session_transaction() as before:
        old_csrf = before.get("csrf_token")
    sign_in(client, "ana")
    with client.session_transaction() as after:
        assert after.get("csrf_token") != old_csrf or old_csrf is None
        token = after["_user_id"]
    assert session_count() == 1
    sign_in(client, "ana")
    with client.session_transaction() as again:
        assert again["_user_id"] != token


def test_sign_out_ends_the_session_for_good(app, client):
    make_user("ana")
    sign_in(client, "ana")
    with client.session_transaction() as stored:
        copied_cookie_session = dict(stored)
    page = client.get("/account").get_data(as_text=True)
    response = client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    assert session_count() == 0
    # Replaying the cookie from before sign-out opens nothing.
    with client.session_transaction() as replay:
        replay.update(copied_cookie_session)
    assert client.get("/account").status_code == 302


def test_logout_needs_post(admin_client):
    assert admin_client.get("/logout").status_code == 405


def test_user_loader_knows_nothing_of_unknown_tokens(app):
    with app.test_request_context():
        assert "_user_id" not in flask_session
    with db.reading() as transaction:
        assert accounts.session_user(transaction, "made-up") is None
