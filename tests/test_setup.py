"""The one-time link that creates the first admin."""

from datetime import timedelta

from sqlalchemy import update

from dashboard.accounts import users as accounts
from dashboard.extensions import db
from dashboard.models import SetupToken, utcnow

from .support import PASSWORD, csrf_token, make_user


def issue():
    with db.writing() as transaction:
        return accounts.issue_setup_token(transaction)


def submit(client, token, username="ana", password=PASSWORD, confirm=PASSWORD):
    page = client.get(f"/setup/{token}")
    assert page.status_code == 200
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "username": username,
            "password": password, "confirm": confirm}  # fmt: skip
    return client.post(f"/setup/{token}", data=data)


def test_the_link_creates_the_first_admin_and_signs_in(app, client):
    token = issue()
    response = submit(client, token)
    assert response.status_code == 302
    assert client.get("/users").status_code == 200  # an admin page, so signed in as admin
    assert client.get(f"/setup/{token}").status_code == 404  # used up


def test_the_link_is_404_once_any_user_exists(app, client):
    token = issue()
    make_user("someone")
    assert client.get(f"/setup/{token}").status_code == 404


def test_a_wrong_or_expired_link_is_404(app, client):
    assert client.get("/setup/made-up-token").status_code == 404
    token = issue()
    with db.writing() as transaction:
        transaction.execute(update(SetupToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get(f"/setup/{token}").status_code == 404


def test_a_newer_link_replaces_the_older(app, client):
    old = issue()
    issue()
    assert client.get(f"/setup/{old}").status_code == 404


def test_form_errors_are_shown_and_nothing_is_created(app, client):
    token = issue()
    response = submit(client, token, password="short", confirm="short")
    assert response.status_code == 200
    assert 'role="alert"' in response.get_data(as_text=True)
    mismatch = submit(client, token, confirm="something else entirely")
    assert "The passwords differ." in mismatch.get_data(as_text=True)
    with db.reading() as transaction:
        assert accounts.count_users(transaction) == 0
