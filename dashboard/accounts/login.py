"""Who is signed in: Flask-Login wiring, the sign-in requirement and role checks."""

from functools import wraps
from urllib.parse import urlsplit

from flask import Flask, abort, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import UserMixin, current_user, login_user, logout_user

from ..errors import json_error, wants_json
from ..extensions import db, login_manager
from ..models import User
from . import tokens as api_tokens
from . import users as accounts

# Everything else needs a signed-in user, so a new route is private unless listed here.
PUBLIC_ENDPOINTS = {
    "assets.favicon",
    "auth.login",
    "auth.setup",
    "health.healthz",
    "static",
    "webhooks.receive",
}
# These let in whom they choose themselves (/metrics: admins, or this machine).
SELF_GUARDED_ENDPOINTS = {"metrics.scrape"}


class SignedInUser(UserMixin):
    """The user of the current session; its id is the session's secret token."""

    def __init__(self, found: accounts.SessionUser):
        self.user_id = found.id
        self.username = found.username
        self.role = found.role
        self.language = found.language
        self.session_token = found.session_token

    @property
    def is_admin(self) -> bool:
        """Whether this user may change settings and accounts."""
        return self.role == "admin"

    def get_id(self) -> str:
        """What Flask-Login keeps in the cookie: the session token, not the user id."""
        return self.session_token


def init(app: Flask) -> None:
    """Bind Flask-Login and require a signed-in user on every non-public endpoint."""
    login_manager.init_app(app)
    login_manager.session_protection = None  # our server-side sessions already end for good
    login_manager.user_loader(_load_user)
    login_manager.request_loader(_load_token_user)
    login_manager.unauthorized_handler(_unauthorized)
    app.before_request(_require_sign_in)


def sign_in(user: User) -> None:
    """Start a new session for ``user``; the old cookie's contents are dropped."""
    with db.writing() as transaction:
        token = accounts.start_session(transaction, user)
    session.clear()
    login_user(SignedInUser(accounts.SessionUser.of(user, token)))


def sign_out() -> None:
    """End the current session on the server, so even a copied cookie is worthless."""
    if current_user.is_authenticated:
        with db.writing() as transaction:
            accounts.end_session(transaction, current_user.session_token)
    logout_user()
    session.clear()


def admin_required(view):
    """Let only admins through; everybody else gets 403."""

    @wraps(view)
    def guarded(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return guarded


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


def _load_user(token: str) -> SignedInUser | None:
    with db.reading() as transaction:
        found = accounts.session_user(transaction, token)
    return SignedInUser(found) if found else None


def _load_token_user(request) -> SignedInUser | None:
    # A token signs in this one request, and only to the JSON API: never a page, a form
    # or the live socket, which rely on the session cookie (and its CSRF protection).
    if request.blueprint != "api":
        return None
    scheme, _space, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        return None
    with db.reading() as transaction:
        found = api_tokens.user_for_token(transaction, secret)
    if found is None:
        return None
    if found.use_due:
        with db.writing() as transaction:
            api_tokens.record_use(transaction, found.token_id)
    return SignedInUser(found.user)


def _require_sign_in():
    # A URL that matches no route answers 404/405 as usual; it shows nothing private.
    if request.routing_exception is not None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.endpoint in SELF_GUARDED_ENDPOINTS:
        return None
    if current_user.is_authenticated:
        return None
    return login_manager.unauthorized()


def _unauthorized():
    if request.blueprint == "api":
        return _refuse_api_request()
    if wants_json():
        return json_error(401, _("Sign in first, or send a valid API token."))
    next_path = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("auth.login", next=next_path))


def _refuse_api_request():
    # RFC 6750: name the scheme we accept, and say when the token sent was the problem.
    if "Authorization" in request.headers:
        response = json_error(
            401,
            _(
                "This API token is not valid: it may be mistyped or revoked, or its user "
                "disabled. Send it as Authorization: Bearer <token>."
            ),
        )
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    response = json_error(401, _("Sign in first, or send a valid API token."))
    response.headers["WWW-Authenticate"] = "Bearer"
    return response
