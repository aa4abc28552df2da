"""Each user's own page: password, language and personal API tokens."""

from flask import Blueprint, abort, flash, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..accounts import tokens as api_tokens
from ..accounts import users as accounts
from ..accounts.login import sign_in
from ..extensions import db
from ..forms import ChangePasswordForm, LanguageForm, NewApiTokenForm
from ..models import User

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("")
def index():
    """The account page."""
    return _page()


@bp.post("/password")
def change_password():
    """Change one's own password; other sessions end, this one continues."""
    form = ChangePasswordForm()
    if not form.validate_on_submit():
        return _page(password_form=form), 400
    with db.reading() as transaction:
        user = transaction.get(User, current_user.user_id)
    if not accounts.password_matches(user.password_hash, form.current.data):
        form.current.errors.append(_("This is not your current password."))
        return _page(password_form=form), 400
    with db.writing() as transaction:
        user = transaction.get(User, current_user.user_id)
        accounts.set_password(transaction, user, form.password.data)
    sign_in(user)
    flash(_("Your password was changed. Other devices were signed out."), "success")
    return redirect(url_for("account.index"))


@bp.post("/language")
def change_language():
    """Choose the language of the pages."""
    form = LanguageForm()
    if not form.validate_on_submit():
        return _page(language_form=form), 400
    with db.writing() as transaction:
        transaction.get(User, current_user.user_id).language = form.language.data or None
    flash(_("Language saved."), "success")
    return redirect(url_for("account.index"))


@bp.post("/tokens")
def create_token():
    """Create a personal API token and show its secret, this once."""
    form = NewApiTokenForm()
    if not form.validate_on_submit():
        return _page(token_form=form), 400
    try:
        with db.writing() as transaction:
            user = transaction.get(User, current_user.user_id)
            _token, secret = api_tokens.create(transaction, user, form.name.data)
    except accounts.AccountError as exc:
        form.name.errors.append(_(str(exc)))
        return _page(token_form=form), 400
    # Rendered here rather than redirected: the secret must reach no URL, cookie or cache.
    response = make_response(_page(new_secret=secret))
    response.headers["Cache-Control"] = "no-store"
    return response


# The bound is PostgreSQL's INTEGER: a larger id is not found, not a database error.
@bp.post("/tokens/<row_id:token_id>/revoke")
def revoke_token(token_id: int):
    """Revoke one of one's own API tokens; scripts using it are refused from now on."""
    with db.writing() as transaction:
        revoked = api_tokens.revoke(transaction, current_user.user_id, token_id)
    if not revoked:
        abort(404)
    flash(_("API token revoked. Scripts that use it are refused from now on."), "success")
    return redirect(url_for("account.index"))


def _page(password_form=None, language_form=None, token_form=None, new_secret=None):
    language_form = language_form or LanguageForm(language=current_user.language or "")
    with db.reading() as transaction:
        tokens = api_tokens.for_user(transaction, current_user.user_id)
    return render_template(
        "account.html",
        password_form=password_form or ChangePasswordForm(),
        language_form=language_form,
        token_form=token_form or NewApiTokenForm(formdata=None),
        tokens=tokens,
        new_secret=new_secret,
    )
