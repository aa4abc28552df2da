"""HTTP hardening: security headers, cookie flags, proxy trust, the plain-http warning, and
the app's secrets kept out of logs and the settings audit."""

import ipaddress
import logging
from urllib.parse import urlsplit

from flask import Flask, Request, current_app, request
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from . import logs
from .extensions import db, vault
from .logs import database_reason
from .models import SettingsChange
from .settings import store as settings

# No inline script or style anywhere, so the policy needs no 'unsafe-*' escape hatch.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Every response carries these, unless a view set its own.
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
)
HSTS = ("Strict-Transport-Security", "max-age=31536000; includeSubDomains")  # https only
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Headers a reverse proxy adds to name its client; on a request they reach untrusted, the
# real client is unknown.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
# The configuration values no log line, page or stored text may show.
APP_SECRETS = ("WEBHOOK_TOKEN", "SECRET_KEY", "SETTINGS_KEY")

log = logging.getLogger(__name__)


class PerRequestSecureSessions(SecureCookieSessionInterface):
    """Session cookies marked Secure whenever the request itself came over https.

    Requests under ``sessionless_prefix`` (the webhook's) get no session at all.
    """

    def __init__(self, sessionless_prefix: str) -> None:
        self.sessionless_prefix = sessionless_prefix

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure on https, so a first trial over plain http on a LAN still signs in."""
        return request.is_secure

    def open_session(self, app: Flask, request: Request):
        """The session of a page request; none for Z-API's webhook calls, which never sign in."""
        # The webhook is the hot path: no cookie to verify, no signer to build, none to set.
        # Flask opens the session before it matches the URL, so the path is what tells.
        if request.path.startswith(self.sessionless_prefix):
            return self.null_session_class()
        return super().open_session(app, request)


def connection_is_private() -> bool:
    """False when this page travels over plain http to somebody other than this machine."""
    if request.is_secure:
        return True
    return (urlsplit(f"//{request.host}").hostname or "") in LOCAL_HOSTS


def client_is_this_machine() -> bool:
    """Whether the request comes from a loopback address, as the trusted proxies report it."""
    # A proxy on this machine that is not trusted (or sends fewer X-Forwarded-For hops than
    # DASHBOARD_TRUSTED_PROXIES counts) would make every visitor look local: its forwarding
    # headers say somebody is behind it, and remote_addr is still the proxy's own.
    if any(name in request.headers for name in FORWARDING_HEADERS) and not _proxies_named_client():
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:  # a Unix socket, or no address at all
        return False


def _proxies_named_client() -> bool:
    # As ProxyFix reads it: the client is the hop the outermost trusted proxy added.
    proxies = current_app.config["TRUSTED_PROXIES"]
    hops = [hop for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    return bool(proxies) and len(hops) >= proxies


def keep_secrets(app: Flask) -> None:
    """Scrub the app's secrets from every log and audit line, those already stored too.

    Audit lines written before outcomes were scrubbed may hold the webhook token in clear;
    they are rewritten at each start (and ``db upgrade``), with the secrets of now.
    """
    logs.keep_app_secrets(*(app.config.get(name) for name in APP_SECRETS))
    try:
        _scrub_stored_changes()
    except SQLAlchemyError as exc:
        # The next start tries again; a database that cannot be read stops nothing here.
        log.warning("Could not scrub the settings audit: %s", database_reason(exc))


def _scrub_stored_changes() -> None:
    if db.file_is_missing:
        return  # opening it would create it, and restore wants a data dir without one
    with db.reading() as transaction:
        if not inspect(transaction.connection()).has_table(SettingsChange.__tablename__):
            return  # a new database, not migrated yet: nothing stored
        if transaction.scalar(select(SettingsChange.id).limit(1)) is None:
            return  # no audit yet: leave the tokens sealed (and cryptography unloaded)
        logs.keep_secret(*settings.stored_secrets(settings.load(transaction), vault))
    with db.writing() as transaction:
        changed = settings.scrub_changes(transaction)
    if changed and db.is_sqlite:
        # The old text stays in the WAL and in the main file's old pages until a checkpoint
        # copies the rewritten pages over them (SQLite zeroes freed space: secure_delete).
        with db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def init(app: Flask, sessionless_prefix: str) -> None:
    """Install proxy trust, cookie settings and the headers every response carries.

    Requests whose path starts with ``sessionless_prefix`` never open a session.
    """
    keep_secrets(app)
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies:
        app.wsgi_app = ProxyFix(
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    app.session_interface = PerRequestSecureSessions(sessionless_prefix)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.after_request(_add_security_headers)
    app.context_processor(lambda: {"connection_is_private": connection_is_private()})


def _add_security_headers(response):
    headers = response.headers
    # One pass over the few headers a response has: werkzeug's lookup of a missing header
    # raises (and builds) an HTTP exception, four times a response on the webhook's path.
    present = {name.lower() for name, _value in headers.items()}
    extra = (*SECURITY_HEADERS, HSTS) if request.is_secure else SECURITY_HEADERS
    for name, value in extra:
        if name.lower() not in present:
            headers.add(name, value)
    return response
