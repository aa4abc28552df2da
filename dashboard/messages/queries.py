"""Reading messages back: search, one message, its callbacks, the customer's replies.

Functions take a Session and never commit.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, tuple_
from sqlalchemy.orm import Session

from .. import lids
from ..models import Delivery, Message, StatusMessageId
from ..phones import PhoneQuery, reversed_range

# A message gathers a handful of callbacks; this only bounds a pathological page.
CALLBACKS_LIMIT = 200
# The replies shown after a message: the customer's next few messages in that chat.
REPLIES_LIMIT = 20


@dataclass(frozen=True)
class MessageFilters:
    """What a message search asks for; every field left empty matches everything."""

    phone: PhoneQuery | None = None
    instance: str | None = None
    state: str | None = None
    # A WhatsApp messageId or a Z-API zaapId, as pasted from another system.
    message_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def search(
    session: Session, filters: MessageFilters, limit: int, before: int | None = None
) -> list[Message]:
    """Up to ``limit`` matching messages older than ``before``, newest first."""
    query = select(Message).where(*_conditions(filters))
    if before is not None:
        query = query.where(Message.id < before)
    return list(session.scalars(query.order_by(Message.id.desc()).limit(limit)))


def get(session: Session, message_pk: int) -> Message | None:
    """One message by its row id, or None."""
    return session.get(Message, message_pk)


def callbacks(session: Session, message: Message) -> list[Delivery]:
    """The callbacks about ``message``, oldest first: its evidence."""
    same_instance = (
        Delivery.instance_id.is_(None)
        if not message.instance_id
        else (Delivery.instance_id == message.instance_id)
    )
    statuses = select(StatusMessageId.delivery_id).where(
        StatusMessageId.message_id == message.message_id
    )
    query = (
        select(Delivery)
        .where(
            same_instance,
            or_(Delivery.message_id == message.message_id, Delivery.id.in_(statuses)),
        )
        .order_by(Delivery.id)
        .limit(CALLBACKS_LIMIT)
    )
    return list(session.scalars(query))


def replies(session: Session, message: Message) -> list[Delivery]:
    """The customer's own messages in the same chat after ``message`` was first seen."""
    if not message.phone_key_reversed:
        return []
    query = (
        select(Delivery)
        .where(
            Delivery.phone_key_reversed == message.phone_key_reversed,
            Delivery.type == "ReceivedCallback",
            Delivery.from_me.is_(False),
            Delivery.id > message.first_delivery_id,
        )
        .order_by(Delivery.id)
        .limit(REPLIES_LIMIT)
    )
    return list(session.scalars(query))


def states_of(session: Session, deliveries: list[Delivery]) -> dict[int, str]:
    """The state of the message each callback is about, by callback id (where it has one)."""
    # A status names its messages in ids[]; one query finds the first of each status's.
    first_status_ids = dict(
        session.execute(
            select(StatusMessageId.delivery_id, func.min(StatusMessageId.message_id))
            .where(StatusMessageId.delivery_id.in_([delivery.id for delivery in deliveries]))
            .group_by(StatusMessageId.delivery_id)
        ).all()
    )
    keys = {}
    for delivery in deliveries:
        message_id = first_status_ids.get(delivery.id) or delivery.message_id
        if message_id:
            keys[delivery.id] = (delivery.instance_id or "", message_id)
    if not keys:
        return {}
    rows = session.execute(
        select(Message.instance_id, Message.message_id, Message.state).where(
            tuple_(Message.instance_id, Message.message_id).in_(set(keys.values()))
        )
    )
    found = {(row.instance_id, row.message_id): row.state for row in rows}
    return {delivery_id: found[key] for delivery_id, key in keys.items() if key in found}


def _conditions(filters: MessageFilters) -> list[ColumnElement]:
    conditions = []
    if filters.phone:
        key, key_end = reversed_range(filters.phone)
        exact = filters.phone.kind == "exact"

        def number(column):
            return column == key if exact else (column >= key) & (column < key_end)

        # Also a message whose chat is only a LID that the map gives to that number.
        mapped = lids.matching(number)
        by_lid = select(Message.id).join(
            mapped,
            (mapped.c.lid_key_reversed == Message.phone_key_reversed)
            & (mapped.c.instance_id == Message.instance_id),
        )
        conditions.append(or_(number(Message.phone_key_reversed), Message.id.in_(by_lid)))
    if filters.instance:
        conditions.append(Message.instance_id == filters.instance)
    if filters.state:
        conditions.append(Message.state == filters.state)
    if filters.message_id:
        conditions.append(
            or_(Message.message_id == filters.message_id, Message.zaap_id == filters.message_id)
        )
    if filters.since:
        conditions.append(Message.first_at >= filters.since)
    if filters.until:
        conditions.append(Message.first_at < filters.until)
    return conditions
