"""The live feed's socket: catch-up after ``after``, then every new delivery."""

import queue
import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, request
from flask_babel import gettext as _
from flask_login import current_user
from simple_websocket import ConnectionClosed

from .. import accounts, deliveries
from ..errors import json_error
from ..extensions import db, hub, sock
from ..live import event_frame

bp = Blueprint("live", __name__)

# More than this many missed rows are not replayed: the page offers a reload or a search.
MAX_CATCH_UP = 1000
# A disabled user's sockets close within this many seconds.
SESSION_CHECK_SECONDS = 2.0
POLICY_VIOLATION = 1008


@bp.before_request
def refuse_before_the_handshake():
    """Foreign origins and a full worker are refused before any upgrade (no 101)."""
    origin = urlsplit(request.headers.get("Origin", ""))
    if origin.netloc != request.host or origin.scheme != request.scheme:
        return json_error(403, _("This socket only accepts pages of this site."))
    if hub.count >= current_app.config["SOCKETS_PER_WORKER"]:
        return json_error(503, _("Too many open live feeds on this server; retrying shortly."))
    return None


@sock.route("/ws/deliveries", bp=bp)
def deliveries_socket(ws):
    """Send every delivery with id > ``after`` (if given), then each new one."""
    after = request.args.get("after", type=int)
    session_token = current_user.session_token
    subscriber = hub.subscribe()
    try:
        already_sent = _catch_up(ws, after) if after is not None else set()
        next_check = time.monotonic() + SESSION_CHECK_SECONDS
        while True:
            try:
                item = subscriber.inbox.get(timeout=0.5)
            except queue.Empty:
                item = None
            if isinstance(item, int):  # the server is shutting down
                ws.close(reason=item)
                return
            if item is not None and item[0] not in already_sent:
                ws.send(item[1])
            # Reading keeps the socket's state current; what clients send is ignored.
            ws.receive(timeout=0)
            if time.monotonic() >= next_check:
                if not _session_alive(session_token):
                    ws.close(reason=POLICY_VIOLATION)
                    return
                next_check = time.monotonic() + SESSION_CHECK_SECONDS
    except ConnectionClosed:
        pass
    finally:
        hub.unsubscribe(subscriber)


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
        if not rows:
            break
        for row in rows:
            ws.send(event_frame("delivery", deliveries.to_json(row)))
            sent.add(row.id)
        cursor = rows[-1].id
    ws.send(event_frame("caught-up", {"count": len(sent), "latest": max(sent, default=after)}))
    return sent


def _session_alive(token: str) -> bool:
    with db.reading() as transaction:
        return accounts.session_user(transaction, token) is not None
