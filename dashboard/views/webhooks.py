"""The endpoint Z-API posts every callback to."""

import hmac
import logging

from flask import Blueprint, current_app, jsonify, request
from flask_babel import gettext as _

from .. import deliveries, disk, metrics, payloads
from ..errors import json_error
from ..extensions import callback_writer, db
from ..logs import database_reason
from ..writer import StorageUnavailable

bp = Blueprint("webhooks", __name__)
log = logging.getLogger(__name__)


@bp.post("/webhooks/<token>", provide_automatic_options=False)
@metrics.timed_webhook
def receive(token: str):
    """Store one callback and answer only once it is committed."""
    expected = current_app.config["WEBHOOK_TOKEN"].encode()
    if not hmac.compare_digest(token.encode(), expected):
        metrics.count_rejection(404)
        return json_error(404, _("Not found."))

    limit = current_app.config["MAX_WEBHOOK_BODY"]
    # Read one byte past the limit, never more: enough to tell an oversize body.
    body = request.stream.read(limit + 1)
    if (request.content_length or 0) > limit or len(body) > limit:
        message = _("The body is larger than %(size)d KiB.", size=limit // 1024)
        response = _reject(413, message, body[:limit])
        # The rest of the body is still on the wire; closing beats reading it.
        response.headers["Connection"] = "close"
        return response
    if not request.is_json:
        return _reject(
            415,
            _(
                "Content-Type must be application/json, not %(received)s.",
                received=request.mimetype or _("missing"),
            ),
            body,
        )
    try:
        callback = payloads.parse(body)
    except payloads.InvalidCallback as exc:
        return _reject(400, _(exc.message, **exc.params), body)

    try:
        recorded = callback_writer.store(callback, current_app.config["WRITE_TIMEOUT_SECONDS"])
    except StorageUnavailable:
        metrics.count_callback(callback.type, "unavailable")
        if disk.state().full:
            return json_error(503, _(disk.FULL_MESSAGE))
        return json_error(503, _("The callback could not be stored right now; please retry."))
    metrics.count_callback(callback.type, "duplicate" if recorded.duplicate else "stored")
    return jsonify(id=recorded.id, duplicate=recorded.duplicate)


def _reject(status: int, reason: str, body: bytes):
    """Answer ``status`` and keep the request in the rejected-requests log."""
    metrics.count_rejection(status)
    try:
        with db.writing() as session:
            deliveries.record_rejection(session, status, reason, request.content_type, body)
    except Exception as exc:
        # The sender still deserves its precise answer when the log cannot be written.
        log.warning("Could not log a rejected webhook request: %s", database_reason(exc))
    return json_error(status, reason)
