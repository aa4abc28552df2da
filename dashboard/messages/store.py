"""Messages in the database, kept up to date by the write that stores their callbacks.

Functions take a Session and never commit: the caller's transaction (the writer's group
commit) stores callbacks and updates their messages together, or neither. Retention
deletes a message once it has deleted all of its callbacks.
"""

from collections.abc import Iterable
from datetime import datetime
from functools import cache

from sqlalchemy import (
    ColumnElement,
    Executable,
    Select,
    Table,
    and_,
    case,
    delete,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import Session

from .. import phones
from ..database import upsert_insert
from ..models import MAX_ROW_ID, Delivery, Message
from ..payloads import Callback
from . import failures, states
from .states import Evidence, MessageFacts

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


def merge(session: Session, evidence: list[Evidence]) -> None:
    """Fold ``evidence`` into the stored messages it is about, creating the new ones."""
    # The batch's evidence is folded per message here, then merged into the stored rows by
    # one upsert: no read first, and on PostgreSQL the upsert's own row lock orders writers
    # of the same message, whichever instance they run in.
    folded = states.fold(evidence)
    rows = [columns(facts) for _key, facts in sorted(folded.items())]
    session.connection().execute(_upsert(session.get_bind().dialect.name), rows)


@cache
def _upsert(dialect_name: str) -> Executable:
    # Built once, as the callbacks' own statements: every write batch runs it.
    insert = upsert_insert(dialect_name, _TABLE)
    merged = _Merge(dialect_name, _TABLE.c, insert.excluded)
    return insert.on_conflict_do_update(
        index_elements=[_TABLE.c.instance_id, _TABLE.c.message_id], set_=merged.values()
    )


class _Merge:
    """The stored row and the batch's fold of one message merged, as SQL: what
    ``MessageFacts.with_evidence`` does one callback at a time, for two folds at once."""

    def __init__(self, dialect_name: str, stored, new):
        self.stored, self.new = stored, new
        self.least = func.least if dialect_name == "postgresql" else func.min
        self.greatest = func.greatest if dialect_name == "postgresql" else func.max
        # Python's order of strings is by code point; PostgreSQL's default collation is not.
        self.text = (lambda column: column.collate("C")) if dialect_name == "postgresql" else None

    def values(self) -> dict:
        """Every column's merged value, each computed from the stored row and the new fold."""
        at = {state: self._least(f"{state}_at") for state in states.STATES}
        counts = {
            f"{state}_count": self.stored[f"{state}_count"] + self.new[f"{state}_count"]
            for state in states.STATES
        }
        phone_from_new = self._prefers_new_phone()
        failure_from_new = self._prefers_new_failure()
        return {
            **{f"{state}_at": value for state, value in at.items()},
            **counts,
            "state": _state_of(at),
            "first_at": self._least("first_at"),
            "zaap_id": self._least("zaap_id", text=True),
            "content": self._least("content", text=True),
            "phone": self._pick(phone_from_new, "phone"),
            "phone_key_reversed": self._pick(phone_from_new, "phone_key_reversed"),
            "error": self._pick(failure_from_new, "error"),
            "error_code": self._pick(failure_from_new, "error_code"),
            "failure_category": self._pick(failure_from_new, "failure_category"),
            "first_delivery_id": self._least("first_delivery_id"),
            "last_delivery_id": self.greatest(
                self.stored.last_delivery_id, self.new.last_delivery_id
            ),
        }

    def _least(self, name: str, text: bool = False):
        # NULL means "no evidence yet": the other side wins, as in states._least.
        stored, new = self.stored[name], self.new[name]
        if text and self.text:
            stored, new = self.text(stored), self.text(new)
        return self.least(func.coalesce(stored, new), func.coalesce(new, stored))

    def _pick(self, from_new, name: str):
        return case((from_new, self.new[name]), else_=self.stored[name])

    def _prefers_new_phone(self):
        # A number reads better than WhatsApp's LID of it (states._phone_preference).
        stored, new = self.stored.phone, self.new.phone
        stored_is_lid, new_is_lid = _is_lid(stored), _is_lid(new)
        return or_(
            stored.is_(None),
            and_(new.is_not(None), stored_is_lid, ~new_is_lid),
            and_(new.is_not(None), stored_is_lid == new_is_lid, self._less(new, stored)),
        )

    def _prefers_new_failure(self):
        # The first failure tells why; ties go by text (MessageFacts._fails_earlier).
        stored, new = self.stored, self.new
        earlier = tuple_(new.failed_at, self._text(new.error), self._text(new.error_code)) < (
            tuple_(stored.failed_at, self._text(stored.error), self._text(stored.error_code))
        )
        return or_(stored.failed_at.is_(None), and_(new.failed_at.is_not(None), earlier))

    def _text(self, column):
        value = func.coalesce(column, _constant(""))
        return self.text(value) if self.text else value

    def _less(self, left, right):
        return (self.text(left) < self.text(right)) if self.text else (left < right)


def _is_lid(phone):
    return func.substr(phone, func.length(phone) - _constant(3)) == _constant("@lid")


def _constant(value: str | int) -> ColumnElement:
    # Written into the SQL, not bound: an executemany binds every parameter of every row,
    # and these never change.
    if isinstance(value, int):
        return literal_column(str(value))
    return literal_column("'{}'".format(value.replace("'", "''")))


def _state_of(at: dict):
    # MessageFacts.state in SQL: a failure stands until evidence of receipt, else the
    # furthest step of the road reached.
    no_receipt = and_(*(at[state].is_(None) for state in states.RECEIPTS))
    furthest = [(at[state].is_not(None), _constant(state)) for state in reversed(states.PROGRESS)]
    return case(
        (and_(at[states.FAILED].is_not(None), no_receipt), _constant(states.FAILED)),
        *furthest,
        else_=_constant(states.QUEUED),
    )


def columns(facts: MessageFacts) -> dict:
    """The messages table's columns of ``facts``."""
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
        "phone_key_reversed": phones.search_key(facts.phone),
        "content": facts.content,
        "state": facts.state,
        "first_at": facts.first_at,
        "error": facts.error,
        "error_code": facts.error_code,
        "failure_category": failure_category(facts.error, facts.error_code),
        "first_delivery_id": facts.first_delivery_id,
        "last_delivery_id": facts.last_delivery_id,
        **steps,
    }


def count_prunable(session: Session, cutoff: datetime) -> int:
    """How many messages a prune to ``cutoff`` deletes: those with no callback received since."""
    kept = select(func.min(Delivery.id)).where(Delivery.received_at >= cutoff)
    return session.scalar(select(func.count()).where(_without_callbacks(kept)))


def prune_batch(session: Session, size: int) -> int:
    """Delete up to ``size`` messages whose callbacks have all been deleted; return how many."""
    gone = (
        select(Message.id)
        .where(_without_callbacks(select(func.min(Delivery.id))))
        .order_by(Message.last_delivery_id)
        .limit(size)
    )
    pruned = delete(Message).where(Message.id.in_(gone))
    return session.execute(pruned.execution_options(synchronize_session=False)).rowcount


def _without_callbacks(oldest_kept: Select):
    # A message's callbacks all have ids at or below its last_delivery_id: below the oldest
    # callback kept, none of them is left. The index on last_delivery_id reads just those.
    return Message.last_delivery_id < func.coalesce(oldest_kept.scalar_subquery(), MAX_ROW_ID + 1)


def failure_category(error: str | None, error_code: str | None) -> str | None:
    """The category ``failures.decode`` gives a message's chosen error; None without one."""
    failure = failures.decode(error, error_code)
    return failure.category if failure else None


def record(session: Session, stored: Iterable[tuple[Callback, int, datetime]]) -> None:
    """Update the messages of callbacks just stored, each with its row id and arrival time."""
    evidence = [
        item
        for callback, delivery_id, received_at in stored
        for item in evidence_of(callback, delivery_id, received_at)
    ]
    if evidence:
        merge(session, evidence)
