"""Search past callbacks by phone and filters, and one callback's detail page."""

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _

from .. import deliveries, payloads, search_params
from ..extensions import db
from ..messages import failures, queries, verdict
from ..messages.queries import MessageFilters
from ..messages.states import STATES, plausible_time
from ..search_params import BadParameter
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
    "ProxyCallback",
)
# The parameters that say what to match: the form's fields, carried by links and exports.
FILTER_NAMES = (
    "phone",
    "messageId",
    "type",
    "failed",
    "state",
    "category",
    "instance",
    "since",
    "until",
)
# "view=callbacks" lists every callback; without it the page lists messages.
EVERY_CALLBACK = "callbacks"


@bp.get("/search")
def index():
    """The search form and one page of matching messages (or of every matching callback)."""
    filters = {name: request.args[name] for name in FILTER_NAMES if request.args.get(name)}
    every_callback = request.args.get("view") == EVERY_CALLBACK
    # Page links keep the page size someone asked for, and the list shown, on top of the filters.
    kept = {**filters, "limit": request.args["limit"]} if request.args.get("limit") else filters
    if every_callback:
        kept = {**kept, "view": EVERY_CALLBACK}
    shared = {
        "values": request.args,
        "filters": filters,
        "kept": kept,
        "every_callback": every_callback,
        "states": STATES,
        "categories": failures.categories(),
    }
    try:
        # A pasted id names messages, whichever list was asked for.
        by_id = search_params.pasted_id(request.args)
        if by_id or not every_callback:
            wanted = search_params.parse_messages(request.args)
        else:
            wanted = search_params.parse(request.args)
    except BadParameter as problem:
        page = render_template(
            "search.html",
            **shared,
            # Only the form's own "1" is shown checked: the value in the URL may be the bad one.
            failed=request.args.get("failed") == "1",
            types=_types(request.args.get("type")),
            problem=problem,
            problem_message=_(problem.message, **problem.params),
        )
        return page, 400
    if isinstance(wanted, search_params.MessageSearch):
        # A pasted id lists messages, even when asked from the list of every callback.
        kept = {name: value for name, value in kept.items() if name != "view"}
        return _messages(wanted, by_id, {**shared, "every_callback": False, "kept": kept})
    with db.reading() as transaction:
        found = deliveries.search(
            transaction, wanted.filters, wanted.limit, before=wanted.before, after=wanted.after
        )
        matches = deliveries.count_matches(transaction, wanted.filters, COUNT_CAP)
    return render_template(
        "search.html",
        **shared,
        failed=wanted.filters.failed,
        types=_types(wanted.filters.type),
        page=found,
        matches=matches,
        cap=COUNT_CAP,
    )


def _messages(wanted: search_params.MessageSearch, by_id: str | None, shared: dict):
    # One page of messages, each with its verdict; for a phone, the card of its latest.
    with db.reading() as transaction:
        rows = queries.search(transaction, wanted.filters, wanted.limit + 1, before=wanted.before)
        listed = rows[: wanted.limit]
        if by_id and len(rows) == 1 and wanted.before is None:
            return redirect(url_for("messages.page", message_pk=rows[0].id), code=303)
        latest = None
        if wanted.filters.phone:
            newest = MessageFilters(phone=wanted.filters.phone, instance=wanted.filters.instance)
            if wanted.before is None and wanted.filters == newest:
                # The first page of exactly that search starts with the newest message.
                latest = listed[0] if listed else None
            else:
                found = queries.search(transaction, newest, 1)
                latest = found[0] if found else None
        judged = [*listed]
        if latest is not None and latest.id not in {message.id for message in listed}:
            judged.append(latest)
        # One query for every message's replies; a verdict reads only the first.
        replies = queries.replies_of(transaction, judged, limit=1)
        sentences = {
            message.id: verdict.verdict_html(message, replies[message.id]) for message in judged
        }
    return render_template(
        "search.html",
        **shared,
        failed=False,
        types=_types(None),
        messages=listed,
        by_id=by_id,
        sentences=sentences,
        latest=latest,
        caveat=verdict.caveat(latest) if latest is not None else None,
        older=listed[-1].id if len(rows) > wanted.limit else None,
        newest_link=wanted.before is not None,
        last_at=verdict.last_at,
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
    # Before 2015 or a day past its arrival is no real time: the page shows the raw number.
    stamped = plausible_time(deliveries.momment(delivery), delivery.received_at)
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
