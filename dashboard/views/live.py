"""The live feed's socket: catch-up after ``after``, then every new delivery."""

import queue
from urllib.parse import urlsplit

from flask import Blueprint, current_app, request
from flask_babel import gettext as _
from flask_login import current_user
from simple_websocket import ConnectionClosed

from .. import deliveries
from ..errors import json_error
from ..extensions import db, hub, sock
from ..live import event_frame

bp = Blueprint("live", __name__)

# More than this many missed rows are not replayed: the page offers a reload or a search.
MAX_CATCH_UP = 1000
# How long an idle socket's thread sleeps before it looks whether the client is gone.
IDLE_SECONDS = 5.0


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
    subscriber = hub.subscribe(current_user.session_token)
    try:
        already_sent = _catch_up(ws, after) if after is not None else set()
        while ws.connected:
            try:
                item = subscriber.inbox.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                item = None
            if isinstance(item, int):  # a close code: shutdown, or the session ended
                ws.close(reason=item)
                return
            if item is not None and item[0] not in already_sent:
                ws.send(item[1])
            # What clients send is read and dropped, so it cannot pile up in memory.
            while ws.receive(timeout=0) is not None:
                pass
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
