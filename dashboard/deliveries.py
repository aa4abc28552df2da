"""Stored callbacks: record and query them. Functions take a Session and never commit."""

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Delivery, RejectedRequest, StatusMessageId, utcnow
from .payloads import Callback

_UPSERT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class Recorded(NamedTuple):
    """Where a callback was stored, and whether we had stored it before."""

    id: int
    duplicate: bool


def record(session: Session, callback: Callback) -> Recorded:
    """Store ``callback`` once; a repeat only counts one more receipt of the existing row."""
    upsert = _UPSERT_INSERTS[session.get_bind().dialect.name]
    table = Delivery.__table__
    statement = (
        upsert(table)
        .values(**callback.columns(), received_at=utcnow(), receive_count=1)
        .on_conflict_do_update(
            index_elements=[table.c.dedup_key],
            set_={"receive_count": table.c.receive_count + 1},
        )
        .returning(table.c.id, table.c.receive_count)
    )
    row = session.execute(statement).one()
    duplicate = row.receive_count > 1
    if not duplicate and callback.status_ids:
        session.execute(
            insert(StatusMessageId.__table__),
            [{"delivery_id": row.id, "message_id": item} for item in callback.status_ids],
        )
    return Recorded(row.id, duplicate)


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
    newest_id = session.scalar(select(func.max(Delivery.id)))
    if newest_id is None:
        return None
    return session.scalar(select(Delivery.received_at).where(Delivery.id == newest_id))
