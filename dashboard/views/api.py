"""JSON for scripts and the pages' own JavaScript."""

from functools import cache
from importlib import resources

from flask import Blueprint, current_app, jsonify, request
from flask_babel import gettext as _

from .. import deliveries, live, search_params
from ..errors import json_error
from ..extensions import db
from ..messages import queries, verdict
from .live import refusal_message, socket_refusal
from .shown import shown_body

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/status")
def status():
    """When the newest callback arrived (``null`` before the first one)."""
    with db.reading() as transaction:
        last = deliveries.last_received_at(transaction)
    return jsonify(lastCallbackAt=last.isoformat() if last else None)


@bp.get("/deliveries")
def list_deliveries():
    """One page of the callbacks that match the filters, newest first, with its cursors."""
    try:
        query = search_params.parse(request.args)
    except search_params.BadParameter as exc:
        return _bad_parameter(exc.name, _(exc.message, **exc.params))
    with db.reading() as transaction:
        page = deliveries.search(
            transaction, query.filters, query.limit, before=query.before, after=query.after
        )
        states = queries.states_of(transaction, page.items)
        items = [_with_state(delivery, states) for delivery in page.items]
    return jsonify(items=items, next=page.older, newer=page.newer)


# The converter's bound answers 404 for an id no database column could hold.
@bp.get("/deliveries/<row_id:delivery_id>")
def delivery(delivery_id: int):
    """One callback: its fields, the body Z-API sent, and the ids of related callbacks."""
    with db.reading() as transaction:
        found = deliveries.get(transaction, delivery_id)
        if found is None:
            return json_error(404, _("No callback has the id %(id)d.", id=delivery_id))
        related = [other.id for other in deliveries.related(transaction, found)]
        shown = _with_state(found, queries.states_of(transaction, [found]))
    payload = shown_body(found.raw).value
    return jsonify({**shown, "payload": payload, "related": related})


def _with_state(delivery, states: dict[int, str]) -> dict:
    # The state of the message the callback is about, or null for other kinds.
    return {**deliveries.to_json(delivery), "messageState": states.get(delivery.id)}


@bp.get("/messages")
def list_messages():
    """One page of the messages that match the filters, newest first, with the next cursor."""
    try:
        query = search_params.parse_messages(request.args)
    except search_params.BadParameter as exc:
        return _bad_parameter(exc.name, _(exc.message, **exc.params))
    with db.reading() as transaction:
        rows = queries.search(transaction, query.filters, query.limit + 1, before=query.before)
        page = rows[: query.limit]
        # One query for every listed message's replies and one for their callbacks, not
        # two per message.
        replies = queries.replies_of(transaction, page)
        evidence = queries.callback_ids_of(transaction, page)
        items = [
            verdict.to_json(message, evidence[message.id], replies[message.id]) for message in page
        ]
    return jsonify(items=items, next=page[-1].id if len(rows) > query.limit else None)


@bp.get("/messages/<row_id:message_pk>")
def message(message_pk: int):
    """One message: its steps, its decoded failure, the verdict and its callbacks."""
    with db.reading() as transaction:
        found = queries.get(transaction, message_pk)
        if found is None:
            return json_error(404, _("No message has the id %(id)d.", id=message_pk))
        evidence = queries.callback_ids_of(transaction, [found])[found.id]
        return jsonify(verdict.to_json(found, evidence, queries.replies(transaction, found)))


@bp.get("/live/check")
def live_check():
    """Whether the live socket of a page at ``origin`` would open now; if not, why, in words."""
    # Whatever origin a caller claims, it learns only what a handshake from there would get;
    # the value is checked first and only ever echoed in JSON, never in a page.
    origin = live.plain_origin(request.args.get("origin"))
    if origin is None:
        return _bad_parameter(
            "origin",
            _(
                "Send the page's origin, such as https://dashboard.example.com: http or "
                "https, a host and an optional port, nothing more."
            ),
        )
    refused = socket_refusal(origin)
    if refused is None:
        return jsonify(ok=True)
    return jsonify(ok=False, reason=refused.reason, error=refusal_message(refused, origin))


def _bad_parameter(name: str, message: str):
    # The message alone may not say which parameter it is about; the prefix does.
    return jsonify(error=f"{name}: {message}", parameter=name), 400


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI description of this API."""
    return current_app.response_class(_openapi_text(), mimetype="application/json")


@cache
def _openapi_text() -> str:
    return resources.files("dashboard").joinpath("openapi.json").read_text(encoding="utf-8")
