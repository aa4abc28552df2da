"""The phone-to-LID map: kept from callbacks that name a person both ways, read by searches.

WhatsApp may name a person by a LID (``…@lid``) instead of their number, and a LID cannot
be turned into a number. A callback that carries both (a message's ``phone`` and
``chatLid``, a group member's ``participantPhone`` and ``participantLid``) is kept here as
a pair, so that a search for the number also finds callbacks that carry only the LID.
Each pair remembers when a callback last carried it, so that retention can forget the
numbers of people no longer heard from. Functions take a Session and never commit.
"""

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cache

from sqlalchemy import ColumnElement, Executable, Subquery, delete, func, select
from sqlalchemy.orm import Session

from .database import upsert_insert
from .models import PhoneLid
from .payloads import Callback


def pairs(callbacks: Sequence[Callback]) -> list[dict]:
    """Each (instance, number, LID) these callbacks carry, once, as rows of the map in key order."""
    found = {
        (callback.instance_id or "", number, lid)
        for callback in callbacks
        for number, lid in callback.phone_lids
    }
    # In key order: writers on other instances then take the same keys in the same order.
    return [
        {"instance_id": instance, "phone_key_reversed": number, "lid_key_reversed": lid}
        for instance, number, lid in sorted(found)
    ]


def record(session: Session, callbacks: Sequence[Callback], seen_at: datetime) -> None:
    """Keep each pair these callbacks carry as seen at ``seen_at`` (stored once a day at most)."""
    rows = [{**pair, "seen_at": seen_at} for pair in pairs(callbacks)]
    if rows:
        session.connection().execute(_upsert(session.get_bind().dialect.name), rows)


def matching(number: Callable[[ColumnElement], ColumnElement]) -> Subquery:
    """The instance and LID key of every number that the condition ``number`` accepts."""
    return (
        select(PhoneLid.instance_id, PhoneLid.lid_key_reversed)
        .where(number(PhoneLid.phone_key_reversed))
        .subquery()
    )


def count_unseen_since(session: Session, cutoff: datetime) -> int:
    """How many pairs no callback has carried since ``cutoff``."""
    return session.scalar(select(func.count()).where(PhoneLid.seen_at < cutoff))


def prune_batch(session: Session, cutoff: datetime, size: int) -> int:
    """Delete up to ``size`` pairs no callback has carried since ``cutoff``; return how many."""
    unseen = select(PhoneLid.id).where(PhoneLid.seen_at < cutoff).limit(size)
    forgotten = delete(PhoneLid).where(PhoneLid.id.in_(unseen))
    return session.execute(forgotten.execution_options(synchronize_session=False)).rowcount


@cache
def _upsert(dialect_name: str) -> Executable:
    # Built once per dialect, like the callbacks' own statements. Every write batch runs
    # it, so a pair seen again is rewritten only on the first batch of a new day: the
    # other upserts of that day find the WHERE false and write nothing.
    table = PhoneLid.__table__
    insert = upsert_insert(dialect_name, table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.phone_key_reversed, table.c.lid_key_reversed, table.c.instance_id],
        set_={"seen_at": insert.excluded.seen_at},
        where=func.date(table.c.seen_at) < func.date(insert.excluded.seen_at),
    )
