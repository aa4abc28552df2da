"""The health check for load balancers and uptime monitors."""

import logging

from flask import Blueprint, jsonify
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError

from .. import deliveries, disk, migrate
from ..extensions import db
from ..logs import database_reason
from ..settings import store as settings

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """200 while callbacks can be stored; 503 without a database or with the disk full."""
    found = disk.state()
    disk_fields = {"disk": "full" if found.full else "ok", "diskFreeBytes": found.free_bytes}
    try:
        with db.reading() as session:
            revision = migrate.current_revision(session.connection())
            last = deliveries.last_received_at(session)
    except SQLAlchemyError as exc:
        log.warning("Health check failed: %s", database_reason(exc))
        return _unavailable(_("The database does not answer."), disk_fields)
    age = settings.seconds_since(last)
    age = age if age is None else round(age, 3)
    fields = {"schemaVersion": revision, "lastCallbackAgeSeconds": age, **disk_fields}
    if found.full:
        # Monitors page on 503: a dashboard that cannot store callbacks is down for Z-API.
        return _unavailable(_(disk.FULL_MESSAGE), fields)
    return jsonify(status="ok", **fields)


def _unavailable(error: str, fields: dict):
    response = jsonify(status="unavailable", error=error, **fields)
    response.status_code = 503
    return response
