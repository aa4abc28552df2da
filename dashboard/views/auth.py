"""Sign in, sign out, and the first-run link that creates the first admin."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..accounts import throttle
from ..accounts import users as accounts
from ..accounts.login import safe_next, sign_in, sign_out
from ..extensions import db
from ..forms import LoginForm, SetupForm

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The sign-in form; throttled per address and per username."""
    form = LoginForm()
    if not form.validate_on_submit():
        return render_template("login.html", form=form)

    username = accounts.normalise_username(form.username.data)
    with db.writing() as transaction:
        attempt_id, retry_after = throttle.admit(transaction, request.remote_addr or "", username)
    if attempt_id is None:
        message = _(
            "Too many failed sign-ins. Try again in %(seconds)d seconds.", seconds=retry_after
        )
        page = render_template("login.html", form=form, error=message)
        return page, 429, {"Retry-After": str(retry_after)}

    # The slow password check runs outside any transaction, holding no lock.
    with db.reading() as transaction:
        user = accounts.find_user(transaction, username)
    password_hash = user.password_hash if user and user.active else None
    if not accounts.password_matches(password_hash, form.password.data):
        return render_template("login.html", form=form, error=_("Wrong username or password."))

    with db.writing() as transaction:
        throttle.forget(transaction, attempt_id)
    sign_in(user)
    return redirect(safe_next(request.args.get("next")) or url_for("feed.index"))


@bp.post("/logout")
def logout():
    """End this session for good."""
    sign_out()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup/<token>", methods=["GET", "POST"])
def setup(token: str):
    """Create the first admin with the one-time link printed by ``serve``."""
    with db.reading() as transaction:
        if not accounts.redeem_setup_token(transaction, token, consume=False):
            abort(404)
    form = SetupForm()
    if not form.validate_on_submit():
        return render_template("setup.html", form=form)
    with db.writing() as transaction:
        # Checked again under the write lock: the link works once, even if clicked twice.
        if not accounts.redeem_setup_token(transaction, token, consume=True):
            abort(404)
        user = accounts.create_user(
            transaction, form.username.data, form.password.data, role="admin"
        )
    sign_in(user)
    flash(_("Welcome! Your admin account is ready."), "success")
    return redirect(url_for("feed.index"))
