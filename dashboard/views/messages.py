"""One message's page: its state, timeline, decoded failure, replies and callbacks."""

from flask import Blueprint, abort, render_template

from ..extensions import db
from ..messages import queries, timeline, verdict
from .shown import BODY_SHOWN_CHARACTERS, duration, lag_words, shown_body

bp = Blueprint("messages", __name__)


@bp.get("/messages/<row_id:message_pk>")
def page(message_pk: int):
    """Everything the callbacks tell about one message we sent."""
    with db.reading() as transaction:
        message = queries.get(transaction, message_pk)
        if message is None:
            abort(404)
        evidence = queries.callbacks(transaction, message)
        replies = queries.replies(transaction, message)
    to_phone = timeline.time_to_phone(message)
    to_read = timeline.time_to_read(message)
    return render_template(
        "message.html",
        message=message,
        verdict=verdict.verdict_html(message, replies),
        failure=verdict.failure_of(message),
        steps=timeline.steps(message),
        to_phone=duration(to_phone) if to_phone is not None else None,
        to_read=duration(to_read) if to_read is not None else None,
        replies=[(reply, timeline.words(reply)) for reply in replies],
        callbacks=[_shown_callback(callback) for callback in evidence],
        more_callbacks=len(evidence) >= queries.CALLBACKS_LIMIT,
        raw_limit=BODY_SHOWN_CHARACTERS,
    )


def _shown_callback(callback) -> dict:
    lag = timeline.zapi_lag(callback)
    body = shown_body(callback.raw)
    return {
        "delivery": callback,
        "lag": lag_words(lag) if lag is not None else None,
        "raw": body.text[:BODY_SHOWN_CHARACTERS],
        "raw_cut": len(body.text) > BODY_SHOWN_CHARACTERS,
    }
