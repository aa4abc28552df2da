"""JSON for scripts and the pages' own JavaScript."""

from flask import Blueprint, jsonify

from .. import deliveries
from ..extensions import db

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/status")
def status():
    """When the newest callback arrived (``null`` before the first one)."""
    with db.reading() as transaction:
        last = deliveries.last_received_at(transaction)
    return jsonify(lastCallbackAt=last.isoformat() if last else None)
