"""The start page: the latest messages, or every callback, live."""

from datetime import timedelta

from flask import Blueprint, render_template, request

from .. import deliveries
from ..extensions import db
from ..messages import failures, queries, states, verdict
from ..models import utcnow
from ..settings import store as settings

bp = Blueprint("feed", __name__)
LATEST = 50
# The failures counted on the feed: those of the last day.
FAILURE_WINDOW = timedelta(hours=24)
MESSAGES, CALLBACKS = "messages", "callbacks"


@bp.get("/")
def index():
    """The messages with the newest news (or, with view=callbacks, the newest callbacks)."""
    view = CALLBACKS if request.args.get("view") == CALLBACKS else MESSAGES
    since = utcnow() - FAILURE_WINDOW
    with db.reading() as transaction:
        # Read first: anything stored after it reaches the page by its socket's catch-up.
        newest_id = deliveries.newest_id(transaction)
        rows = deliveries.latest(transaction, LATEST) if view == CALLBACKS else []
        news = queries.latest(transaction, LATEST) if view == MESSAGES else []
        events = queries.instance_events(transaction)
        failure_counts = queries.failure_counts(transaction, since)
        last = deliveries.last_received_at(transaction)
    return render_template(
        "feed.html",
        view=view,
        newest_id=newest_id,
        deliveries=rows,
        news=news,
        failure_labels={
            item.message.id: verdict.failure_of(item.message)["label"]
            for item in news
            if item.message.state == states.FAILED and item.message.error
        },
        instance_events=events,
        failure_counts=failure_counts,
        failures_since=since,
        categories=[(code, failures.translated(code).label) for code in failures.categories()],
        last_callback_at=last,
        last_callback_age=settings.seconds_since(last),
    )
