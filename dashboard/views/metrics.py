"""``/metrics``: the server's figures for Prometheus, for admins and for this machine."""

import logging

from flask import Blueprint
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from .. import deliveries, disk, metrics
from ..errors import json_error
from ..extensions import db
from ..logs import database_reason
from ..security import client_is_this_machine
from ..settings import store as settings

bp = Blueprint("metrics", __name__)
log = logging.getLogger(__name__)


@bp.before_request
def admins_or_this_machine():
    """Let through admins and requests from this machine; others learn how to get in."""
    if client_is_this_machine() or (current_user.is_authenticated and current_user.is_admin):
        return None
    if current_user.is_authenticated:
        return json_error(
            403,
            _(
                "Only admins may read the metrics. Ask an admin, or scrape them from this "
                "machine (127.0.0.1)."
            ),
        )
    return json_error(
        401,
        _(
            "Sign in as an admin, or scrape the metrics from this machine (127.0.0.1); "
            "behind a reverse proxy, requests it forwards count as its clients'."
        ),
    )


@bp.get("/metrics")
def scrape():
    """Every worker's figures, with the last callback's age and the database's disk."""
    found = disk.state()
    body, content_type = metrics.exposition(_last_callback_age(), found.free_bytes, found.full)
    return body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"}


def _last_callback_age() -> float | None:
    try:
        with db.reading() as session:
            last = deliveries.last_received_at(session)
    except SQLAlchemyError as exc:
        # The other figures still help to find out why the database is gone.
        log.warning("Metrics could not read the database: %s", database_reason(exc))
        metrics.count_database_error("metrics")
        return None
    return settings.seconds_since(last)
