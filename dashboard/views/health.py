"""The health check for load balancers and uptime monitors."""

import logging

from flask import Blueprint, jsonify
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError

from .. import deliveries, migrate
from ..extensions import db
from ..logs import database_reason
from ..models import utcnow

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """200 with the schema revision and the age of the last callback, 503 without a DB."""
    try:
        with db.reading() as session:
            revision = migrate.current_revision(session.connection())
            last = deliveries.last_received_at(session)
    except SQLAlchemyError as exc:
        log.warning("Health check failed: %s", database_reason(exc))
        response = jsonify(status="unavailable", error=_("The database does not answer."))
        response.status_code = 503
        return response
    age = None if last is None else round((utcnow() - last).total_seconds(), 3)
    return jsonify(status="ok", schemaVersion=revision, lastCallbackAgeSeconds=age)
