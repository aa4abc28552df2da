"""The phone-to-LID map: kept from callbacks that name a person both ways, read by searches.

WhatsApp may name a person by a LID (``…@lid``) instead of their number, and a LID cannot
be turned into a number. A callback that carries both (a message's ``phone`` and
``chatLid``, a group member's ``participantPhone`` and ``participantLid``) is kept here as
a pair, so that a search for the number also finds callbacks that carry only the LID.
Functions take a Session and never commit.
"""

from collections.abc import Callable, Sequence
from functools import cache

from sqlalchemy import ColumnElement, Executable, Subquery, select
from sqlalchemy.orm import Session

from .database import upsert_insert
from .models import PhoneLid
from .payloads import Callback


def record(session: Session, callbacks: Sequence[Callback]) -> None:
    """Keep each (instance, number, LID) these callbacks carry; one already kept stays as it is."""
    pairs = {
        (callback.instance_id or "", number, lid)
        for callback in callbacks
        for number, lid in callback.phone_lids
    }
    if not pairs:
        return
    # In key order: writers on other instances then take the same keys in the same order.
    rows = [
        {"instance_id": instance, "phone_key_reversed": number, "lid_key_reversed": lid}
        for instance, number, lid in sorted(pairs)
    ]
    session.connection().execute(_insert(session.get_bind().dialect.name), rows)


def matching(number: Callable[[ColumnElement], ColumnElement]) -> Subquery:
    """The instance and LID key of every number that the condition ``number`` accepts."""
    return (
        select(PhoneLid.instance_id, PhoneLid.lid_key_reversed)
        .where(number(PhoneLid.phone_key_reversed))
        .subquery()
    )


@cache
def _insert(dialect_name: str) -> Executable:
    # Built once per dialect, like the callbacks' own statements.
    return upsert_insert(dialect_name, PhoneLid.__table__).on_conflict_do_nothing()
