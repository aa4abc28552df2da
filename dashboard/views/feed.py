"""The start page: the latest callbacks."""

from flask import Blueprint, render_template

from .. import deliveries
from ..extensions import db
from ..settings import store as settings

bp = Blueprint("feed", __name__)
LATEST = 50


@bp.get("/")
def index():
    """The newest callbacks, newest first."""
    with db.reading() as transaction:
        rows = deliveries.latest(transaction, LATEST)
    last = rows[0].received_at if rows else None
    return render_template(
        "feed.html",
        deliveries=rows,
        last_callback_at=last,
        last_callback_age=settings.seconds_since(last),
    )
