"""CSV export of a search."""

from collections.abc import Iterator

from flask import Blueprint, Response, render_template, request
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

from .. import csv_export, deliveries, search_params
from ..deliveries import Filters
from ..errors import EXPLANATIONS
from ..extensions import db
from ..models import utcnow

bp = Blueprint("export", __name__)
# Rows read per query; one batch is all the export ever holds in memory.
BATCH = 1000
# An export is the whole search, whichever page it was started from.
PAGE_PARAMETERS = ("limit", "before", "after")


@bp.get("/search/export.csv", endpoint="csv")
def csv_file():
    """Every callback of the search as CSV, newest first; phones masked unless ``mask=0``."""
    wanted = {name: value for name, value in request.args.items() if name not in PAGE_PARAMETERS}
    try:
        filters = search_params.parse(wanted).filters
        # Phones leave the dashboard masked unless the export asks otherwise.
        masked = search_params.flag(request.args, "mask", default=True)
    except search_params.BadParameter as exc:
        message = f"{exc.name}: {_(exc.message, **exc.params)}"
        page = render_template(
            "error.html", error=BadRequest(), title=EXPLANATIONS[400][0], message=message
        )
        return page, 400
    filename = f"deliveries-{utcnow():%Y%m%dT%H%M%SZ}.csv"
    return Response(
        _rows(filters, masked),
        content_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            # Phone numbers and message ids: no copy is kept in a shared or browser cache.
            "Cache-Control": "no-store",
        },
    )


def _rows(filters: Filters, masked: bool) -> Iterator[str]:
    yield csv_export.header()
    with db.reading() as session:
        for batch in deliveries.iter_matches(session, filters, BATCH):
            chunk = csv_export.lines(csv_export.row(delivery, masked) for delivery in batch)
            # Each batch reads in its own short transaction: ended before the client is
            # waited on, so a slow download holds no snapshot and no connection. A commit
            # (of nothing) rather than a rollback, which would expire the batch's rows.
            session.commit()
            yield chunk
