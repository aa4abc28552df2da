"""Stored callbacks: record and query them. Functions take a Session and never commit."""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import NamedTuple

from sqlalchemy import Executable, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Delivery, RejectedRequest, StatusMessageId, utcnow
from .payloads import Callback

_UPSERT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


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
    upsert = _UPSERT_INSERTS[dialect_name](table)
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


def record_rejection(
    session: Session, status_code: int, reason: str, content_type: str | None, body: bytes
) -> None:
    """Keep a refused webhook request so an admin can see what was sent."""
    session.add(
        RejectedRequest(
            status_code=status_code,
            reason=reason,
            content_type=(content_type or None) and content_type[:255],
            body=body,
        )
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
        "receivedAt": delivery.received_at.isoformat().replace("+00:00", "Z"),
        "type": delivery.type,
        "instanceId": delivery.instance_id,
        "phone": delivery.phone,
        "messageId": delivery.message_id,
        "zaapId": delivery.zaap_id,
        "momment": delivery.momment,
        "error": delivery.error,
        "errorCode": delivery.error_code,
        "status": delivery.status,
        "isGroup": delivery.is_group,
        "participant": delivery.participant,
    }


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
