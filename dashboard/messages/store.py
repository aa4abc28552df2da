"""Messages in the database, kept up to date by the write that stores their callbacks.

Functions take a Session and never commit: the caller's transaction (the writer's group
commit) stores callbacks and updates their messages together, or neither.
"""

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import NamedTuple

from sqlalchemy import Executable, Table, bindparam, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .. import phones
from ..models import Message
from ..payloads import Callback
from . import states
from .states import Evidence, MessageFacts, Step

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_TABLE: Table = Message.__table__


def evidence_of(callback: Callback, delivery_id: int, received_at: datetime) -> list[Evidence]:
    """What one stored callback says about the messages we sent (nothing, for most kinds)."""
    at = states.evidence_time(callback.momment, received_at)
    instance = callback.instance_id or ""
    if callback.type == "DeliveryCallback" and callback.message_id:
        step = states.FAILED if callback.error else states.QUEUED
        return [
            Evidence(
                instance,
                callback.message_id,
                step,
                at,
                delivery_id,
                zaap_id=callback.zaap_id,
                phone=callback.phone,
                error=callback.error,
                error_code=callback.error_code,
            )
        ]
    if callback.type == "MessageStatusCallback":
        step = states.STATUS_STEPS.get((callback.status or "").upper())
        return [
            Evidence(instance, message_id, step, at, delivery_id, phone=callback.phone)
            for message_id in (callback.status_ids if step else ())
        ]
    if callback.type == "ReceivedCallback" and callback.from_me and callback.message_id:
        # Our own message echoed back ("notify sent by me"): it exists, and says what it said.
        return [
            Evidence(
                instance,
                callback.message_id,
                states.QUEUED,
                at,
                delivery_id,
                phone=callback.phone,
                content=callback.content,
            )
        ]
    return []


def _update(session: Session, evidence: list[Evidence]) -> None:
    # Fold the evidence into the stored messages it is about, creating the new ones.
    pending = evidence
    # Twice at most: on PostgreSQL another instance may create one of our new messages
    # between our read and our insert; its row is then read, locked and folded into.
    for _attempt in range(2):
        keys = sorted({item.key for item in pending})
        known = _locked(session, keys)
        folded = states.fold(pending, {key: facts for key, (_id, facts) in known.items()})
        changed = [
            {"row_id": known[key][0], **_columns(facts)}
            for key, facts in folded.items()
            if key in known
        ]
        if changed:
            statements = _statements(session.get_bind().dialect.name)
            session.connection().execute(statements.update, changed)
        new = [_columns(facts) for key, facts in sorted(folded.items()) if key not in known]
        created = _insert_new(session, new)
        pending = [item for item in pending if item.key not in known and item.key not in created]
        if not pending:
            return
    raise RuntimeError("messages changed under this write twice; the write is retried")


def _locked(session: Session, keys: list[tuple[str, str]]) -> dict[tuple, tuple[int, MessageFacts]]:
    if not keys:
        return {}
    statements = _statements(session.get_bind().dialect.name)
    rows = session.connection().execute(statements.locked, {"keys": keys})
    return {(row.instance_id, row.message_id): (row.id, _facts(row)) for row in rows}


def _insert_new(session: Session, rows: list[dict]) -> set[tuple[str, str]]:
    if not rows:
        return set()
    statements = _statements(session.get_bind().dialect.name)
    # SQLAlchemy sends these as few multi-row INSERTs, RETURNING what each one created.
    return {tuple(found) for found in session.connection().execute(statements.insert, rows)}


class _Statements(NamedTuple):
    locked: Executable
    insert: Executable
    update: Executable


@cache
def _statements(dialect_name: str) -> _Statements:
    # Built once, as the callbacks' own: every write batch runs them.
    key = tuple_(_TABLE.c.instance_id, _TABLE.c.message_id)
    locked = (
        select(_TABLE)
        .where(key.in_(bindparam("keys", expanding=True)))
        .order_by(_TABLE.c.instance_id, _TABLE.c.message_id)
        # On PostgreSQL, writers of one message wait for each other, in one order.
        .with_for_update()
    )
    insert = (
        _INSERTS[dialect_name](_TABLE)
        .on_conflict_do_nothing(index_elements=[_TABLE.c.instance_id, _TABLE.c.message_id])
        .returning(_TABLE.c.instance_id, _TABLE.c.message_id)
    )
    values = {name: bindparam(name) for name in _columns_names()}
    update = _TABLE.update().where(_TABLE.c.id == bindparam("row_id")).values(values)
    return _Statements(locked, insert, update)


def _columns_names() -> list[str]:
    return [column.name for column in _TABLE.c if column.name != "id"]


def _columns(facts: MessageFacts) -> dict:
    steps = {}
    for state in states.STATES:
        step = facts.steps.get(state)
        steps[f"{state}_at"] = step.at if step else None
        steps[f"{state}_count"] = step.count if step else 0
    return {
        "instance_id": facts.instance_id,
        "message_id": facts.message_id,
        "zaap_id": facts.zaap_id,
        "phone": facts.phone,
        "phone_key_reversed": phones.reversed_key(phones.stored_key(facts.phone)),
        "content": facts.content,
        "state": facts.state,
        "first_at": facts.first_at,
        "error": facts.error,
        "error_code": facts.error_code,
        "first_delivery_id": facts.first_delivery_id,
        "last_delivery_id": facts.last_delivery_id,
        **steps,
    }


def _facts(row) -> MessageFacts:
    steps = {
        state: Step(getattr(row, f"{state}_at"), getattr(row, f"{state}_count"))
        for state in states.STATES
        if getattr(row, f"{state}_at") is not None
    }
    return MessageFacts(
        instance_id=row.instance_id,
        message_id=row.message_id,
        steps=steps,
        zaap_id=row.zaap_id,
        phone=row.phone,
        content=row.content,
        error=row.error,
        error_code=row.error_code,
        first_delivery_id=row.first_delivery_id,
        last_delivery_id=row.last_delivery_id,
    )


def record(session: Session, stored: Iterable[tuple[Callback, int, datetime]]) -> None:
    """Update the messages of callbacks just stored, each with its row id and arrival time."""
    evidence = [
        item
        for callback, delivery_id, received_at in stored
        for item in evidence_of(callback, delivery_id, received_at)
    ]
    if evidence:
        _update(session, evidence)
