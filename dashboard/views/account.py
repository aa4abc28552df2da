"""Each user's own page: password and language."""

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user

from .. import accounts
from ..auth import sign_in
from ..extensions import db
from ..forms import ChangePasswordForm, LanguageForm
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


def _page(password_form=None, language_form=None):
    language_form = language_form or LanguageForm(language=current_user.language or "")
    return render_template(
        "account.html",
        password_form=password_form or ChangePasswordForm(),
        language_form=language_form,
    )
