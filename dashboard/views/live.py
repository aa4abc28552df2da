"""The live feed's socket: catch-up after ``after``, then every new delivery."""

import ipaddress
from urllib.parse import urlsplit

from flask import Blueprint, current_app, request
from flask_babel import gettext as _
from flask_login import current_user
from simple_websocket import ConnectionClosed

from .. import deliveries, live
from ..errors import json_error
from ..extensions import db, hub, sock
from ..live import Refusal, event_frame
from ..server.environ import KEEP_CONNECTION

bp = Blueprint("live", __name__)

# More than this many missed rows are not replayed: the page offers a reload or a search.
MAX_CATCH_UP = 1000


@bp.before_request
def refuse_before_the_handshake():
    """Foreign origins and a full worker are refused before any upgrade (no 101)."""
    # Without compression every socket gets the same bytes for a frame, encoded once;
    # with it each would need its own compressor, and its CPU, for every delivery.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    origin = request.headers.get("Origin")
    refused = socket_refusal(origin)
    if refused is None:
        return None
    return json_error(refused.status, refusal_message(refused, origin))


def served_origin() -> str:
    """This request's origin as the app sees it, after any trusted proxy's X-Forwarded-*."""
    return f"{request.scheme}://{request.host}".lower()


def public_origin() -> str | None:
    """DASHBOARD_PUBLIC_URL's origin (as a browser writes it), or None when it is unset."""
    public = current_app.config.get("PUBLIC_URL")
    if not public:
        return None
    address = urlsplit(public)
    host = f"[{address.hostname}]" if ":" in address.hostname else address.hostname
    # Browsers leave the scheme's default port out of an origin.
    port = "" if address.port in (None, 443) else f":{address.port}"
    return f"{address.scheme}://{host}{port}".lower()


def accepted_origins() -> set[str]:
    """The origins of the pages whose sockets this server accepts.

    The served origin comes from the Host header, which a page on a rebound DNS name
    controls; so with DASHBOARD_PUBLIC_URL set only its origin is accepted, and the
    served one only for a loopback address reached from this machine itself.
    """
    public = public_origin()
    if public is None:
        return {served_origin()}
    if _straight_from_this_machine():
        return {public, served_origin()}
    return {public}


def _straight_from_this_machine() -> bool:
    # An admin's own http://127.0.0.1:8000, through an SSH tunnel say: no browser elsewhere
    # can be made to send a loopback Host from a loopback address.
    try:
        host = urlsplit(f"//{request.host}").hostname
    except ValueError:  # a Host header that is no host, such as "[x"
        return False
    return _is_loopback(host) and _is_loopback(request.remote_addr)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def socket_refusal(origin: str | None) -> Refusal | None:
    """Why this process would refuse a socket from a page at ``origin`` now, or None."""
    limit = current_app.config["SOCKETS_PER_WORKER"]
    return live.refusal(origin, accepted_origins(), hub.count, limit)


def refusal_message(refused: Refusal, origin: str | None) -> str:
    """What stopped the socket and what to change, in the reader's language."""
    if refused == live.FULL:
        # TRANSLATORS: %(limit)d is how many live feeds one server process holds.
        return _(
            "All live feeds of this server are in use (%(limit)d per worker). Close other "
            "tabs of the dashboard, or raise DASHBOARD_SOCKETS_PER_WORKER (and --threads) "
            "and restart.",
            limit=current_app.config["SOCKETS_PER_WORKER"],
        )
    page = live.plain_origin(origin)
    if page is None:  # no Origin header, or "null": not a page of any site
        return _("This socket only accepts pages of this site.")
    public = public_origin()
    if public is not None:
        # TRANSLATORS: %(page)s and %(public)s are addresses such as https://dashboard.example.com.
        return _(
            "This page is at %(page)s, but the live feed only accepts pages at %(public)s "
            "(DASHBOARD_PUBLIC_URL). Open the dashboard there, or correct "
            "DASHBOARD_PUBLIC_URL and restart.",
            page=page,
            public=public,
        )
    # TRANSLATORS: %(page)s and %(seen)s are addresses such as https://dashboard.example.com.
    where = _(
        "This page is at %(page)s but the dashboard sees its requests as %(seen)s.",
        page=page,
        seen=served_origin(),
    )
    return f"{where} {_proxy_advice()}"


def _proxy_advice() -> str:
    # Most often a TLS proxy whose X-Forwarded-Proto is not trusted: the app sees http.
    proxies = current_app.config["TRUSTED_PROXIES"]
    if not proxies:
        return _(
            "Behind a reverse proxy, set DASHBOARD_TRUSTED_PROXIES=1 (the number of proxies) "
            "and restart."
        )
    return _(
        "DASHBOARD_TRUSTED_PROXIES is %(count)d: check that it is the number of proxies in "
        "front and that they send X-Forwarded-Proto and X-Forwarded-Host.",
        count=proxies,
    )


@sock.route("/ws/deliveries", bp=bp)
def deliveries_socket(ws):
    """Send every delivery with id > ``after`` (if given), then each new one."""
    after = request.args.get("after", type=int)
    subscriber = hub.subscribe(current_user.session_token)
    try:
        already_sent = _catch_up(ws, after) if after is not None else set()
    except (ConnectionClosed, OSError):  # the client left during its catch-up
        hub.unsubscribe(subscriber)
        return
    # From here on one thread of this process serves the socket, with every other one.
    hub.adopt(subscriber, ws, already_sent)
    keep_connection = request.environ.get(KEEP_CONNECTION)
    if keep_connection is not None:
        keep_connection()  # serve's worker: this thread is free, the connection stays
    else:
        subscriber.ended.wait()  # any other server would close it when this returns


def _catch_up(ws, after: int) -> set[int]:
    """Send what the client missed (or a gap event), then a caught-up event."""
    with db.reading() as transaction:
        newest = deliveries.newest_id(transaction)
        missed = deliveries.count_newer_than(transaction, after)
    if missed > MAX_CATCH_UP:
        ws.send(event_frame("gap", {"missed": missed, "latest": newest}))
        ws.send(event_frame("caught-up", {"count": 0, "latest": newest}))
        return set()
    sent: set[int] = set()
    cursor = after
    while True:
        with db.reading() as transaction:
            rows = deliveries.newer_than(transaction, cursor, 200)
            frames = live.delivery_frames(transaction, rows)
        if not rows:
            break
        for row_id, frame in frames:
            ws.send(frame)
            sent.add(row_id)
        cursor = rows[-1].id
    ws.send(event_frame("caught-up", {"count": len(sent), "latest": max(sent, default=after)}))
    return sent
