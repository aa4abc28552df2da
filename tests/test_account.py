"""A user's own page: password and language."""

from sqlalchemy import select

from dashboard.accounts import users as accounts
from dashboard.extensions import db
from dashboard.models import User

from .support import PASSWORD, csrf_token, sign_in


def ana():
    with db.reading() as transaction:
        return transaction.scalar(select(User).where(User.username == "ana"))


def test_change_own_password_keeps_this_session_and_ends_others(app, admin_client):
    other = app.test_client()
    sign_in(other, "ana")
    token = csrf_token(admin_client.get("/account").get_data(as_text=True))
    response = admin_client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current": PASSWORD,
            "password": "a new long password",
            "confirm": "a new long password",
        },
    )
    assert response.status_code == 302
    assert accounts.password_matches(ana().password_hash, "a new long password")
    assert admin_client.get("/account").status_code == 200
    assert other.get("/account").status_code == 302


def test_wrong_current_password_is_refused(admin_client):
    token = csrf_token(admin_client.get("/account").get_data(as_text=True))
    response = admin_client.post(
        "/account/password",
        data={"csrf_token": token, "current": "nope", "password": "x" * 12, "confirm": "x" * 12},
    )
    assert response.status_code == 400
    assert "This is not your current password." in response.get_data(as_text=True)
    assert accounts.password_matches(ana().password_hash, PASSWORD)


def test_language_choice_is_saved(admin_client):
    token = csrf_token(admin_client.get("/account").get_data(as_text=True))
    admin_client.post("/account/language", data={"csrf_token": token, "language": "en"})
    assert ana().language == "en"
    admin_client.post("/account/language", data={"csrf_token": token, "language": ""})
    assert ana().language is None
    bad = admin_client.post("/account/language", data={"csrf_token": token, "language": "fr"})
    assert bad.status_code == 400
