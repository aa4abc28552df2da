"""The endpoint Z-API posts every callback to."""

import hmac
import logging

from flask import Blueprint, Response, current_app, jsonify, request
from flask_babel import gettext as _
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected

from .. import disk, metrics, payloads, rejections
from ..errors import json_error
from ..extensions import callback_writer, db
from ..logs import database_reason
from ..server.environ import DECLARED_BODY
from ..translatable import N_
from ..writer import StorageUnavailable

bp = Blueprint("webhooks", __name__)
# Where every webhook URL starts; what follows is the secret token.
PATH_PREFIX = "/webhooks/"
log = logging.getLogger(__name__)

# Python's json module says what is wrong with a body in English. Each thing it says, by
# how its text starts, in our words, so that a refusal is wholly in the sender's language.
_JSON_PROBLEMS = {
    "Expecting value": N_("a value was expected"),
    "Expecting property name": N_("a field name in double quotes was expected"),
    "Expecting ':'": N_('a ":" was expected after a field name'),
    "Expecting ','": N_('a "," or the end of the object or array was expected'),
    "Extra data": N_("more text follows the JSON value"),
    "Unterminated string": N_("a string has no closing double quote"),
    "Invalid control character": N_("a string holds a control character such as a line break"),
    "Invalid \\escape": N_("a string holds an unknown backslash escape"),
    "Invalid \\uXXXX escape": N_("a \\u escape needs 4 hexadecimal digits"),
    "Illegal trailing comma": N_("a comma comes right before the end of an object or array"),
    "Exceeds the limit": N_("a number has too many digits"),
}
# What it would say next (it may grow): the sentence still says where, in one language.
_UNKNOWN_PROBLEM = N_("a syntax error")
# The kinds of JSON value that are not an object.
_JSON_KINDS = {
    "array": N_("array"),
    "string": N_("string"),
    "number": N_("number"),
    "boolean": N_("boolean"),
    "null": N_("null"),
}


@bp.post(PATH_PREFIX + "<token>", provide_automatic_options=False)
@metrics.timed_webhook
def receive(token: str):
    """Store one callback and answer only once it is committed."""
    expected = current_app.config["WEBHOOK_TOKEN"].encode()
    if not hmac.compare_digest(token.encode(), expected):
        metrics.count_rejection(404)
        return json_error(404, _("Not found."))

    limit = current_app.config["MAX_WEBHOOK_BODY"]
    # The server's worker also adds up a chunked body's declared chunk sizes.
    declared = max(request.content_length or 0, request.environ.get(DECLARED_BODY, 0))
    if declared > limit:
        # Refused from the framing alone: waiting for a body we will not keep would let a
        # sender hold this thread for as long as it takes to send it (or forever).
        return _too_large(limit, b"")
    # Read one byte past the limit, never more: enough to tell an oversize chunked body.
    body = _read_body(limit + 1)
    if isinstance(body, Response):  # the body could not be read whole; this says why
        return body
    if len(body) > limit:
        return _too_large(limit, body)
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
        return _reject(400, _refusal(exc), body)

    try:
        recorded = callback_writer.store(callback, current_app.config["WRITE_TIMEOUT_SECONDS"])
    except StorageUnavailable:
        metrics.count_callback(callback.type, "unavailable")
        if disk.state().full:
            return json_error(503, _(disk.FULL_MESSAGE))
        return json_error(503, _("The callback could not be stored right now; please retry."))
    metrics.count_callback(callback.type, "duplicate" if recorded.duplicate else "stored")
    return jsonify(id=recorded.id, duplicate=recorded.duplicate)


def _too_large(limit: int, kept: bytes):
    """413 for a body over ``limit``; the rest of it is still on the wire, so close."""
    message = _("The body is larger than %(size)d KiB.", size=limit // 1024)
    return _closing(_reject(413, message, kept))


def _refusal(exc: payloads.InvalidCallback) -> str:
    """Why a body is no callback, with none of Python's English inside the translated words."""
    params = dict(exc.params)
    if "problem" in params:
        said = params["problem"]
        ours = (words for start, words in _JSON_PROBLEMS.items() if said.startswith(start))
        params["problem"] = _(next(ours, _UNKNOWN_PROBLEM))
    if "kind" in params:
        params["kind"] = _(_JSON_KINDS.get(params["kind"], params["kind"]))
    return _(exc.message, **params)


def _read_body(size: int) -> bytes | Response:
    """Up to ``size`` bytes of the body, or the answer when its framing is broken."""
    try:
        body = request.stream.read(size)
    except ParseException as exc:  # gunicorn: a bad chunk size, extension or terminator
        return _malformed_chunks(exc)
    except ClientDisconnected:  # werkzeug: fewer bytes than Content-Length, then EOF
        return _ended_early()
    except OSError as exc:  # gunicorn's NoMoreData, or a socket error: the sender stopped
        return _malformed_chunks(exc) if _is_chunked() else _ended_early()
    declared = request.content_length
    # gunicorn hands over a short body without complaint when the sender hangs up early.
    if declared is not None and len(body) < min(declared, size):
        return _ended_early()
    return body


def _is_chunked() -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _malformed_chunks(exc: Exception):
    """A chunked body that breaks the framing: 400, and the connection is not reused."""
    log.warning("Refused a webhook request: malformed chunked body (%s).", type(exc).__name__)
    message = _(
        "The chunked body is malformed: each chunk needs its size in hexadecimal and a CRLF "
        "after its data, and the body must end with a chunk of size 0."
    )
    # What was read cannot be told apart from the broken framing, so none of it is kept.
    return _closing(_reject(400, message, b""))


def _ended_early():
    """The sender hung up before the end of its body: nothing is stored or kept."""
    declared = request.content_length or 0
    log.warning(
        "A webhook request ended before its %d-byte body was complete; nothing was stored.",
        declared,
    )
    # The sender is most likely gone; if it only stopped sending, it still learns why.
    message = _(
        "The body ended before the %(declared)d bytes its Content-Length announced; "
        "nothing was stored.",
        declared=declared,
    )
    return _closing(json_error(400, message))


def _closing(response):
    # Where the next request would start on this connection is unknown: close it.
    response.headers["Connection"] = "close"
    return response


def _reject(status: int, reason: str, body: bytes):
    """Answer ``status`` and keep the request in the rejected-requests log."""
    metrics.count_rejection(status)
    try:
        with db.writing() as session:
            rejections.record(
                session,
                status,
                reason,
                request.content_type,
                body,
                keep=current_app.config["MAX_WEBHOOK_BODY"],
            )
    except Exception as exc:
        # The sender still deserves its precise answer when the log cannot be written.
        log.warning("Could not log a rejected webhook request: %s", database_reason(exc))
    return json_error(status, reason)
