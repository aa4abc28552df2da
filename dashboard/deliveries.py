"""Stored callbacks: record and query them. Functions take a Session and never commit."""

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Literal, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Executable,
    Integer,
    Select,
    bindparam,
    delete,
    func,
    insert,
    select,
    union,
)
from sqlalchemy.orm import Session

from . import lids
from .database import upsert_insert
from .messages import queries
from .messages import store as messages
from .models import Delivery, StatusMessageId, UTCDateTime, iso_utc, utcnow
from .payloads import Callback
from .phones import PhoneQuery, display, is_chat_id, reversed_range

# The one kind of callback whose ``error`` is a failed send.
FAILED_SEND_TYPE = "DeliveryCallback"


class Recorded(NamedTuple):
    """Where a callback was stored, and whether we had stored it before."""

    id: int
    duplicate: bool


def record(session: Session, callbacks: Sequence[Callback]) -> list[Recorded]:
    """Store each callback once; a repeat only counts one more receipt of the stored row.

    The whole batch costs three statements however many callbacks it holds: one
    multi-row upsert, one select of the resulting ids, one insert of new status ids.
    """
    if not callbacks:
        return []
    # Fold repeats within the batch into one row each: PostgreSQL refuses to upsert the
    # same key twice in one statement.
    repeats = Counter(callback.dedup_key for callback in callbacks)
    firsts: dict[str, Callback] = {}
    for callback in callbacks:
        firsts.setdefault(callback.dedup_key, callback)
    now = utcnow()
    rows = [
        {**callback.columns(), "received_at": now, "receive_count": repeats[key]}
        for key, callback in firsts.items()
    ]
    statements = _write_statements(session.get_bind().dialect.name)
    connection = session.connection()
    connection.execute(statements.upsert, rows)
    stored = {
        row.dedup_key: row
        for row in connection.execute(statements.find_by_keys, {"keys": list(firsts)})
    }
    # We hold the write lock, so every receipt beyond this batch's came before it.
    new_keys = {key for key in firsts if stored[key].receive_count == repeats[key]}
    status_rows = [
        {"delivery_id": stored[key].id, "message_id": message_id}
        for key in new_keys
        for message_id in firsts[key].status_ids
    ]
    if status_rows:
        connection.execute(statements.insert_status_ids, status_rows)
    # A repeat of a stored callback is no new news about its message: only new rows count.
    messages.record(session, [(firsts[key], stored[key].id, now) for key in new_keys])
    lids.record(session, [firsts[key] for key in new_keys], now)

    results, seen = [], set()
    for callback in callbacks:
        key = callback.dedup_key
        results.append(Recorded(stored[key].id, key in seen or key not in new_keys))
        seen.add(key)
    return results


class _WriteStatements(NamedTuple):
    upsert: Executable
    find_by_keys: Executable
    insert_status_ids: Executable


@cache
def _write_statements(dialect_name: str) -> _WriteStatements:
    # Built once: constructing these per batch costs more than executing them.
    table = Delivery.__table__
    upsert = upsert_insert(dialect_name, table)
    return _WriteStatements(
        upsert=upsert.on_conflict_do_update(
            index_elements=[table.c.dedup_key],
            set_={"receive_count": table.c.receive_count + upsert.excluded.receive_count},
        ),
        find_by_keys=select(table.c.id, table.c.dedup_key, table.c.receive_count).where(
            table.c.dedup_key.in_(bindparam("keys", expanding=True))
        ),
        insert_status_ids=insert(StatusMessageId.__table__),
    )


def last_received_at(session: Session) -> datetime | None:
    """When the newest stored callback arrived, or None before the first one."""
    return session.scalar(select(Delivery.received_at).order_by(Delivery.id.desc()).limit(1))


def latest(session: Session, limit: int) -> list[Delivery]:
    """The ``limit`` newest stored callbacks, newest first."""
    return list(session.scalars(select(Delivery).order_by(Delivery.id.desc()).limit(limit)))


def to_json(delivery: Delivery) -> dict:
    """A stored callback in the public JSON shape, with Z-API's own camelCase names."""
    return {
        "id": delivery.id,
        "receivedAt": iso_utc(delivery.received_at),
        "type": delivery.type,
        "instanceId": delivery.instance_id,
        "phone": delivery.phone,
        "messageId": delivery.message_id,
        "zaapId": delivery.zaap_id,
        "momment": momment(delivery),
        "error": delivery.error,
        "errorCode": delivery.error_code,
        "status": delivery.status,
        "isGroup": delivery.is_group,
        "participant": delivery.participant,
        "fromMe": delivery.from_me,
        "phoneDisplay": display(delivery.phone),
        "receiveCount": delivery.receive_count,
    }


def momment(delivery: Delivery) -> int | None:
    """Z-API's stamp of a stored callback in milliseconds, or None when it holds no integer."""
    # SQLite keeps whatever a row written by hand put in the column, an infinity or text.
    value = delivery.momment
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def newer_than(session: Session, after: int, limit: int) -> list[Delivery]:
    """Up to ``limit`` callbacks with an id above ``after``, oldest first."""
    query = select(Delivery).where(Delivery.id > after).order_by(Delivery.id).limit(limit)
    return list(session.scalars(query))


def newest_id(session: Session) -> int:
    """The id of the newest stored callback, 0 before the first."""
    return session.scalar(select(func.max(Delivery.id))) or 0


def count_newer_than(session: Session, after: int) -> int:
    """How many callbacks have an id above ``after``."""
    return session.scalar(select(func.count()).select_from(Delivery).where(Delivery.id > after))


def ids_between(session: Session, low: int, high: int) -> list[int]:
    """The ids of stored callbacks with ``low < id <= high``, in order."""
    if high <= low:
        return []
    query = select(Delivery.id).where(Delivery.id > low, Delivery.id <= high).order_by(Delivery.id)
    return list(session.scalars(query))


def by_ids(session: Session, ids: list[int]) -> list[Delivery]:
    """The stored callbacks with these ids, in id order."""
    return list(session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)))


@dataclass(frozen=True)
class Filters:
    """What a search asks for; every field left empty matches everything."""

    phone: PhoneQuery | None = None
    type: str | None = None
    failed: bool = False
    instance: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class Page(NamedTuple):
    """One page of search results, newest first, with the cursors of its neighbours.

    ``older`` is the ``before`` of the next page back, ``newer`` the ``after`` of the page
    in front; None when there is no such page. Ids are the cursors, so a page stays the
    same while new callbacks arrive.
    """

    items: list[Delivery]
    older: int | None
    newer: int | None


def search(
    session: Session,
    filters: Filters,
    limit: int,
    before: int | None = None,
    after: int | None = None,
) -> Page:
    """The page of matching callbacks just older than ``before`` (or newer than ``after``)."""
    # One row past the page tells whether there is a page beyond it.
    if after is not None:
        rows = _rows(session, filters, "after", after, limit + 1)
        more_newer = len(rows) > limit
        items = rows[-limit:]  # newest first: the rows nearest ``after`` are the last ones
        return Page(
            items,
            older=items[-1].id if items else None,
            newer=items[0].id if more_newer else None,
        )
    rows = _rows(session, filters, "before" if before is not None else None, before, limit + 1)
    items = rows[:limit]
    return Page(
        items,
        older=items[-1].id if len(rows) > limit else None,
        newer=items[0].id if before is not None and items else None,
    )


def count_matches(session: Session, filters: Filters, cap: int) -> int:
    """How many callbacks match, counting no further than ``cap + 1``."""
    shape = _Shape.of(filters, keyset=None)
    return session.scalar(_count_statement(shape), _parameters(filters, None, cap + 1))


def iter_matches(session: Session, filters: Filters, batch: int) -> Iterator[list[Delivery]]:
    """Every matching callback, newest first, a batch at a time (for exports)."""
    before = None
    while True:
        rows = _rows(session, filters, "before" if before is not None else None, before, batch)
        if not rows:
            return
        yield rows
        session.expunge_all()  # a batch written out is not needed again: memory stays flat
        before = rows[-1].id


def get(session: Session, delivery_id: int) -> Delivery | None:
    """One stored callback by id, or None."""
    return session.get(Delivery, delivery_id)


def related(session: Session, delivery: Delivery) -> list[Delivery]:
    """Other callbacks about the same message (statuses, repeats), oldest first."""
    # The message it is about, and the sends its statuses are about: their sends, echoes
    # and the other statuses about any of them.
    message_ids = [delivery.message_id] if delivery.message_id else []
    message_ids += [row.message_id for row in delivery.status_ids]
    lookups = queries.naming(message_ids) if message_ids else []
    if delivery.zaap_id:
        lookups.append(select(Delivery.id).where(Delivery.zaap_id == delivery.zaap_id))
    if not lookups:
        return []
    query = (
        # Each lookup goes through its own index; an OR of them would read every row.
        select(Delivery)
        .where(Delivery.id.in_(union(*lookups)), Delivery.id != delivery.id)
        .order_by(Delivery.received_at, Delivery.id)
        .limit(RELATED_LIMIT)
    )
    return list(session.scalars(query))


# A message gathers a handful of statuses; this only bounds a pathological page.
RELATED_LIMIT = 200


def count_older_than(session: Session, cutoff: datetime) -> int:
    """How many callbacks arrived before ``cutoff``."""
    query = select(func.count()).select_from(Delivery).where(Delivery.received_at < cutoff)
    return session.scalar(query)


def prune_batch(session: Session, cutoff: datetime, size: int) -> int:
    """Delete up to ``size`` of the oldest callbacks received before ``cutoff``; return how many."""
    oldest = (
        select(Delivery.id).where(Delivery.received_at < cutoff).order_by(Delivery.id).limit(size)
    )
    ids = list(session.scalars(oldest))
    if not ids:
        return 0
    # Status ids go first, so this works whether or not the database enforces the cascade.
    session.execute(delete(StatusMessageId).where(StatusMessageId.delivery_id.in_(ids)))
    session.execute(delete(Delivery).where(Delivery.id.in_(ids)))
    return len(ids)


class _Shape(NamedTuple):
    # Which parts a search has; each shape's statement is built once, values bound later.
    # "chat": an exact group, LID, channel or broadcast id rather than a number.
    phone: Literal["exact", "suffix", "chat"] | None
    type: bool
    failed: bool
    instance: bool
    since: bool
    until: bool
    keyset: Literal["before", "after"] | None

    @classmethod
    def of(cls, filters: Filters, keyset: Literal["before", "after"] | None) -> "_Shape":
        return cls(
            phone=_phone_kind(filters.phone) if filters.phone else None,
            type=bool(filters.type),
            failed=filters.failed,
            instance=bool(filters.instance),
            since=filters.since is not None,
            until=filters.until is not None,
            keyset=keyset,
        )


def _rows(
    session: Session,
    filters: Filters,
    keyset: Literal["before", "after"] | None,
    cursor: int | None,
    limit: int,
) -> list[Delivery]:
    # Up to ``limit`` matching callbacks past the cursor, newest first, in one statement.
    statement = _rows_statement(_Shape.of(filters, keyset))
    return list(session.scalars(statement, _parameters(filters, cursor, limit)))


def _parameters(filters: Filters, cursor: int | None, limit: int) -> dict:
    values = {
        "type": filters.type,
        "instance": filters.instance,
        "since": filters.since,
        "until": filters.until,
        "cursor": cursor,
        "limit": limit,
    }
    if filters.phone:
        key, key_end = reversed_range(filters.phone)
        values.update(key=key, key_end=key_end)
    return values


@cache
def _rows_statement(shape: _Shape) -> Select:
    matching = _matching_ids(shape).subquery()
    query = select(Delivery).join(matching, Delivery.id == matching.c.id)
    return query.order_by(Delivery.id.desc())


@cache
def _count_statement(shape: _Shape) -> Select:
    return select(func.count()).select_from(_matching_ids(shape).subquery())


def _matching_ids(shape: _Shape) -> Select:
    # The ids of matching callbacks in cursor order. A phone is looked up in each column
    # that can hold it, each through its own index already in id order (and a number
    # through the phone-to-LID map); the union of the short lists is then cut to the page.
    conditions = _conditions(shape)
    ascending = shape.keyset == "after"
    order = Delivery.id.asc() if ascending else Delivery.id.desc()
    limit = bindparam("limit", type_=Integer)
    if shape.phone is None:
        return select(Delivery.id).where(*conditions).order_by(order).limit(limit)
    # A LID is only ever in the LID fields and the chat's; a number only in the chat's, the
    # group member's, and the map: each search reads the indexes that can hold it.
    per_column = [
        select(Delivery.id)
        .where(_phone_condition(column, shape.phone), *conditions)
        .order_by(order)
        .limit(limit)
        .subquery()
        for column in (_CHAT_ID_COLUMNS if shape.phone == "chat" else _NUMBER_COLUMNS)
    ]
    if shape.phone != "chat":
        per_column.append(_mapped(shape, conditions, order, limit))
    both = union(*(select(part.c.id) for part in per_column)).subquery()
    return (
        select(both.c.id).order_by(both.c.id.asc() if ascending else both.c.id.desc()).limit(limit)
    )


def _mapped(shape: _Shape, conditions: list, order, limit):
    # A chat named only by a LID that the map gives to the number searched for.
    mapped = lids.matching(lambda column: _phone_condition(column, shape.phone))
    return (
        select(Delivery.id)
        .join(
            mapped,
            (mapped.c.lid_key_reversed == Delivery.phone_key_reversed)
            & (mapped.c.instance_id == func.coalesce(Delivery.instance_id, "")),
        )
        .where(*conditions)
        .order_by(order)
        .limit(limit)
        .subquery()
    )


# Where a number is looked for: the chat and the group member (and the phone-to-LID map).
_NUMBER_COLUMNS = (Delivery.phone_key_reversed, Delivery.participant_key_reversed)
# Where a chat id is: the chat, the group member, and the LID fields.
_CHAT_ID_COLUMNS = (
    *_NUMBER_COLUMNS,
    Delivery.chat_lid_key_reversed,
    Delivery.sender_lid_key_reversed,
    Delivery.participant_lid_key_reversed,
)


def _conditions(shape: _Shape) -> list[ColumnElement]:
    conditions = []
    if shape.type:
        conditions.append(Delivery.type == bindparam("type"))
    if shape.failed:
        # Only a send fails: a disconnect or a proxy event carries an error about the
        # instance, not about a message.
        conditions += [Delivery.error.is_not(None), Delivery.type == FAILED_SEND_TYPE]
    if shape.instance:
        conditions.append(Delivery.instance_id == bindparam("instance"))
    if shape.since:
        conditions.append(Delivery.received_at >= bindparam("since", type_=UTCDateTime))
    if shape.until:
        conditions.append(Delivery.received_at < bindparam("until", type_=UTCDateTime))
    if shape.keyset == "before":
        conditions.append(Delivery.id < bindparam("cursor", type_=Integer))
    elif shape.keyset == "after":
        conditions.append(Delivery.id > bindparam("cursor", type_=Integer))
    return conditions


def _phone_kind(phone: PhoneQuery) -> Literal["exact", "suffix", "chat"]:
    if phone.kind == "exact" and is_chat_id(phone.value):
        return "chat"
    return phone.kind


def _phone_condition(column, kind: Literal["exact", "suffix", "chat"]) -> ColumnElement:
    if kind != "suffix":
        return column == bindparam("key")
    return (column >= bindparam("key")) & (column < bindparam("key_end"))
