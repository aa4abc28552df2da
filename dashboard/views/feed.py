"""The start page: the latest callbacks."""

from flask import Blueprint, render_template

from .. import deliveries
from ..extensions import db

bp = Blueprint("feed", __name__)
LATEST = 50


@bp.get("/")
def index():
    """The newest callbacks, newest first."""
    with db.reading() as transaction:
        rows = deliveries.latest(transaction, LATEST)
    return render_template("feed.html", deliveries=rows)
