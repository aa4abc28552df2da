"""The admins' users page and the account rules behind it."""

import pytest
from sqlalchemy import select

from dashboard.accounts import users as accounts
from dashboard.extensions import db
from dashboard.models import User

from .support import PASSWORD, csrf_token, make_user, sign_in


def user(name):
    with db.reading() as transaction:
        return transaction.scalar(select(User).where(User.username == name))


def post(client, path, **data):
    token = csrf_token(client.get("/users").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data}, follow_redirects=True)


def test_viewers_get_403_on_the_users_page(viewer_client):
    assert viewer_client.get("/users").status_code == 403
    assert post_as_viewer(viewer_client).status_code == 403


def post_as_viewer(client):
    token = csrf_token(client.get("/account").get_data(as_text=True))
    return client.post("/users", data={"csrf_token": token, "username": "x", "password": PASSWORD})


def test_admin_adds_a_user(admin_client):
    page = post(admin_client, "/users", username="Bia", password=PASSWORD, role="viewer")
    assert "Account Bia added." in page.get_data(as_text=True)
    assert user("bia").role == "viewer"
    assert accounts.password_matches(user("bia").password_hash, PASSWORD)
    assert user("bia").password_hash.startswith("$argon2id$")


def test_adding_a_taken_name_or_short_password_shows_errors(admin_client):
    taken = post(admin_client, "/users", username="ANA", password=PASSWORD, role="viewer")
    assert "This username is already taken." in taken.get_data(as_text=True)
    short = post(admin_client, "/users", username="bia", password="short", role="viewer")
    text = short.get_data(as_text=True)
    assert "at least 10 characters" in text
    assert 'role="alert"' in text
    assert user("bia") is None


def test_disable_enable_role_and_password(admin_client):
    target = make_user("bia", "viewer")
    post(admin_client, f"/users/{target.id}/disable")
    assert user("bia").active is False
    post(admin_client, f"/users/{target.id}/enable")
    assert user("bia").active is True
    post(admin_client, f"/users/{target.id}/role", role="admin")
    assert user("bia").role == "admin"
    post(admin_client, f"/users/{target.id}/password", password="another long password")
    assert accounts.password_matches(user("bia").password_hash, "another long password")


def test_the_last_admin_cannot_be_disabled_or_demoted(admin_client):
    ana = user("ana")
    for path, data in (
        (f"/users/{ana.id}/disable", {}),
        (f"/users/{ana.id}/role", {"role": "viewer"}),
    ):
        page = post(admin_client, path, **data).get_data(as_text=True)
        assert "The last admin cannot be disabled or lose the admin role." in page
    assert user("ana").active and user("ana").role == "admin"


def test_unknown_user_is_404(admin_client):
    token = csrf_token(admin_client.get("/users").get_data(as_text=True))
    assert admin_client.post("/users/999/disable", data={"csrf_token": token}).status_code == 404


def test_password_reset_ends_the_users_sessions(app, admin_client):
    make_user("bia", "viewer")
    other = app.test_client()
    sign_in(other, "bia")
    assert other.get("/account").status_code == 200
    post(admin_client, f"/users/{user('bia').id}/password", password="brand new password")
    assert other.get("/account").status_code == 302


@pytest.mark.parametrize("role", ["owner", ""])
def test_unknown_roles_are_refused(app, role):
    with pytest.raises(accounts.AccountError), db.writing() as transaction:
        accounts.create_user(transaction, "x", PASSWORD, role)
