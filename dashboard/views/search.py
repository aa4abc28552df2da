"""Search past callbacks by phone and filters, and one callback's detail page."""

from datetime import UTC, datetime

from flask import Blueprint, abort, render_template, request
from flask_babel import gettext as _

from .. import deliveries, payloads
from ..extensions import db
from ..messages import queries
from ..search_params import BadParameter, parse
from .shown import BODY_SHOWN_CHARACTERS, lag_words, shown_body

bp = Blueprint("search", __name__)
# Counting stops here and the page says "more than": a count costs as much as the rows it
# walks, and a busy number can have hundreds of thousands.
COUNT_CAP = 1000
# The types offered in the form; any other typed into the URL is kept as an extra option.
TYPES = (
    "DeliveryCallback",
    "MessageStatusCallback",
    "ReceivedCallback",
    "PresenceChatCallback",
    "ConnectedCallback",
    "DisconnectedCallback",
)
# The parameters that say what to match: the form's fields, carried by links and exports.
FILTER_NAMES = ("phone", "type", "failed", "instance", "since", "until")


@bp.get("/search")
def index():
    """The search form and one page of matching callbacks, newest first."""
    filters = {name: request.args[name] for name in FILTER_NAMES if request.args.get(name)}
    try:
        wanted = parse(request.args)
    except BadParameter as problem:
        page = render_template(
            "search.html",
            values=request.args,
            filters=filters,
            # Only the form's own "1" is shown checked: the value in the URL may be the bad one.
            failed=request.args.get("failed") == "1",
            types=_types(request.args.get("type")),
            problem=problem,
            problem_message=_(problem.message, **problem.params),
        )
        return page, 400
    with db.reading() as transaction:
        found = deliveries.search(
            transaction, wanted.filters, wanted.limit, before=wanted.before, after=wanted.after
        )
        matches = deliveries.count_matches(transaction, wanted.filters, COUNT_CAP)
    # Page links keep the page size someone asked for, on top of the filters.
    kept = {**filters, "limit": request.args["limit"]} if request.args.get("limit") else filters
    return render_template(
        "search.html",
        values=request.args,
        filters=filters,
        failed=wanted.filters.failed,
        types=_types(wanted.filters.type),
        page=found,
        kept=kept,
        matches=matches,
        cap=COUNT_CAP,
    )


@bp.get("/deliveries/<row_id:delivery_id>")
def detail(delivery_id: int):
    """Everything about one stored callback, and the other callbacks about its message."""
    with db.reading() as transaction:
        delivery = deliveries.get(transaction, delivery_id)
        if delivery is None:
            abort(404)
        others = deliveries.related(transaction, delivery)
        message = queries.message_of(transaction, delivery)
    stamped = _stamped_at(deliveries.momment(delivery))
    body = shown_body(delivery.raw)
    return render_template(
        "delivery.html",
        delivery=delivery,
        related=others,
        message=message,
        body=body,
        raw=body.text[:BODY_SHOWN_CHARACTERS],
        raw_cut=len(body.text) > BODY_SHOWN_CHARACTERS,
        raw_limit=BODY_SHOWN_CHARACTERS,
        max_depth=payloads.MAX_DEPTH,
        stamped_at=stamped,
        lag=lag_words(delivery.received_at - stamped) if stamped else None,
    )


def _types(current: str | None) -> list[str]:
    return [*TYPES, current] if current and current not in TYPES else list(TYPES)


def _stamped_at(momment: int | None) -> datetime | None:
    # Z-API stamps milliseconds since the epoch; a value no calendar holds is shown as sent.
    if momment is None:
        return None
    try:
        return datetime.fromtimestamp(momment / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
