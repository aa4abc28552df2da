"""The admins' page of refused webhook requests: what a sender posted, and why it was refused."""

from flask import Blueprint, Response, abort, current_app, render_template, request
from flask_babel import gettext as _

from .. import rejections
from ..accounts.login import admin_required
from ..extensions import db
from ..models import RejectedRequest
from ..search_params import is_row_id

bp = Blueprint("refused", __name__, url_prefix="/refused")

PAGE_SIZE = 50
# Enough to recognise a payload; a whole body (up to 64 KiB) is one click away.
PREVIEW_CHARACTERS = 2000


@bp.get("")
@admin_required
def index():
    """The newest refused requests, a page at a time, each with the start of its body."""
    raw_before = request.args.get("before", "").strip()
    if raw_before and not is_row_id(raw_before):
        message = _("“Older than” must be the number of a refused request, as the links give.")
        return _page(rows=[], older=None, paged=True, problem=message), 400
    before = int(raw_before) if raw_before else None
    with db.reading() as session:
        found = rejections.newest(session, before, PAGE_SIZE + 1)
    rows = [(row, *rejections.preview(row.body, PREVIEW_CHARACTERS)) for row in found[:PAGE_SIZE]]
    older = found[PAGE_SIZE - 1].id if len(found) > PAGE_SIZE else None
    return _page(rows=rows, older=older, paged=before is not None, problem=None)


@bp.get("/<row_id:request_id>/body")
@admin_required
def body(request_id: int):
    """The exact bytes kept of one refused request's body, as a file to download."""
    with db.reading() as session:
        row = session.get(RejectedRequest, request_id)
        if row is None:
            abort(404)
        data = row.body or b""
    return Response(
        data,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="refused-{request_id}.body"'},
    )


def _page(**shown):
    days = current_app.config["RETENTION_DAYS"]
    return render_template("refused.html", retention_days=days, **shown)
