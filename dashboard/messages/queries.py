"""Reading messages back: search, one message, its callbacks, the customer's replies.

Functions take a Session and never commit.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Literal, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    or_,
    select,
    union,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from .. import lids
from ..models import Delivery, Message, StatusMessageId, UTCDateTime
from ..phones import PhoneQuery, is_chat_id, reversed_range
from . import failures, states

# A message gathers a handful of callbacks; this only bounds a pathological page.
CALLBACKS_LIMIT = 200
# The replies shown after a message: the customer's next few messages in that chat.
REPLIES_LIMIT = 20
# Messages whose replies or callbacks one statement reads: SQLite takes at most 500 terms
# in a compound SELECT, and a page lists up to 500 messages and the latest.
_MESSAGES_PER_QUERY = 100


@dataclass(frozen=True)
class MessageFilters:
    """What a message search asks for; every field left empty matches everything."""

    phone: PhoneQuery | None = None
    instance: str | None = None
    state: str | None = None
    # A failures.categories() code: the messages whose chosen error decodes to it.
    category: str | None = None
    # A WhatsApp messageId or a Z-API zaapId, as pasted from another system.
    message_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def search(
    session: Session, filters: MessageFilters, limit: int, before: int | None = None
) -> list[Message]:
    """Up to ``limit`` matching messages older than ``before``, newest first."""
    shape = _SearchShape.of(filters, before is not None)
    return list(session.scalars(_search_statement(shape), _search_values(filters, limit, before)))


class _SearchShape(NamedTuple):
    # Which parts a search has; each shape's statement is built once, values bound later:
    # building and compiling the statement costs far more than running it.
    phone: Literal["exact", "suffix"] | None
    # A number, not a chat id: also the messages of the LIDs the map gives it.
    mapped: bool
    instance: bool
    state: bool
    category: bool
    message_id: bool
    since: bool
    until: bool
    before: bool

    @classmethod
    def of(cls, filters: MessageFilters, before: bool) -> "_SearchShape":
        phone = filters.phone
        return cls(
            phone=phone.kind if phone else None,
            mapped=bool(phone) and not is_chat_id(phone.value),
            instance=bool(filters.instance),
            state=bool(filters.state),
            category=bool(filters.category),
            message_id=bool(filters.message_id),
            since=filters.since is not None,
            until=filters.until is not None,
            before=before,
        )


def _search_values(filters: MessageFilters, limit: int, before: int | None) -> dict:
    values = {
        "instance": filters.instance,
        "state": filters.state,
        "category": filters.category,
        "message_id": filters.message_id,
        "since": filters.since,
        "until": filters.until,
        "before": before,
        "limit": limit,
    }
    if filters.phone:
        values["key"], values["key_end"] = reversed_range(filters.phone)
    return values


@cache
def _search_statement(shape: _SearchShape) -> Select:
    conditions = _conditions(shape)
    newest_first = Message.id.desc()
    limit = bindparam("limit", type_=Integer)
    if shape.phone is None:
        return select(Message).where(*conditions).order_by(newest_first).limit(limit)

    # The number's own messages and those of the LIDs the map gives it, each through its
    # own index already in id order and cut to the page, then merged: one OR of the two
    # would read and sort every message of a busy number.
    def number(column):
        if shape.phone == "exact":
            return column == bindparam("key")
        return (column >= bindparam("key")) & (column < bindparam("key_end"))

    branches = [select(Message.id).where(number(Message.phone_key_reversed), *conditions)]
    if shape.mapped:
        mapped = lids.matching(number)
        branches.append(
            select(Message.id)
            .join(
                mapped,
                (mapped.c.lid_key_reversed == Message.phone_key_reversed)
                & (mapped.c.instance_id == Message.instance_id),
            )
            .where(*conditions)
        )
    found = union(
        *(
            select(part.c.id)
            for part in (
                branch.order_by(newest_first).limit(limit).subquery() for branch in branches
            )
        )
    ).subquery()
    page = select(found.c.id).order_by(found.c.id.desc()).limit(limit)
    return select(Message).where(Message.id.in_(page)).order_by(newest_first)


def get(session: Session, message_pk: int) -> Message | None:
    """One message by its row id, or None."""
    return session.get(Message, message_pk)


def callbacks(session: Session, message: Message) -> list[Delivery]:
    """The callbacks about ``message``, oldest first: its evidence."""
    ids = callback_ids_of(session, [message])[message.id]
    return list(session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)))


def callback_ids_of(session: Session, messages: list[Message]) -> dict[int, list[int]]:
    """The ids of each message's ``callbacks``, by message id, one query per 100 messages."""
    found: dict[int, list[int]] = {message.id: [] for message in messages}
    for message_pk, delivery_id in _per_message(
        session, messages, _callback_ids_statement, _callback_ids_values
    ):
        found[message_pk].append(delivery_id)
    return found


@cache
def _callback_ids_statement(count: int) -> Select:
    # A callback about a message: its own send and echo, or a status naming it in ids[].
    def about(n: int) -> Select:
        return (
            select(_message_pk(n), Delivery.id.label("delivery_id"))
            .where(
                func.coalesce(Delivery.instance_id, "") == bindparam(f"instance_{n}"),
                Delivery.id.in_(union_all(*naming([bindparam(f"message_id_{n}")]))),
            )
            .order_by(Delivery.id)
            .limit(CALLBACKS_LIMIT)
        )

    pairs = _joined([about(n) for n in range(count)])
    return select(pairs.c.message_pk, pairs.c.delivery_id).order_by(
        pairs.c.message_pk, pairs.c.delivery_id
    )


def _callback_ids_values(n: int, message: Message) -> dict:
    return {
        f"message_pk_{n}": message.id,
        f"instance_{n}": message.instance_id or "",
        f"message_id_{n}": message.message_id,
    }


def naming(message_ids: list) -> list[Select]:
    """Two lookups of the ids of callbacks naming one of ``message_ids``, to join in a UNION.

    Their sends and echoes, and the statuses whose ids[] list them, each through its own
    index: written as one OR of the two, PostgreSQL reads every stored callback to find
    the few that match.
    """
    return [
        select(Delivery.id).where(Delivery.message_id.in_(message_ids)),
        select(StatusMessageId.delivery_id).where(StatusMessageId.message_id.in_(message_ids)),
    ]


def _per_message(
    session: Session,
    messages: list[Message],
    statement: Callable[[int], Select],
    values: Callable[[int, Message], dict],
    **shared,
) -> Iterator:
    """The rows of ``statement`` for ``messages``, _MESSAGES_PER_QUERY at a time.

    Each statement has one branch per message, built once per count and cached, its
    values bound at each call: building 50 branches costs far more than running them.
    """
    for start in range(0, len(messages), _MESSAGES_PER_QUERY):
        chunk = messages[start : start + _MESSAGES_PER_QUERY]
        bound = dict(shared)
        for n, message in enumerate(chunk):
            bound.update(values(n, message))
        yield from session.execute(statement(len(chunk)), bound)


def _message_pk(n: int):
    # The row id of the branch's message, typed so that PostgreSQL can join the branches.
    return bindparam(f"message_pk_{n}", type_=Integer).label("message_pk")


def _joined(branches: list[Select]):
    # One statement's branches, each cut to its own limit, joined in one.
    return union_all(*(select(branch.subquery()) for branch in branches)).subquery()


def replies(session: Session, message: Message) -> list[Delivery]:
    """The customer's own messages in the same chat after ``message`` was first seen."""
    return replies_of(session, [message])[message.id]


def replies_of(
    session: Session, messages: list[Message], limit: int = REPLIES_LIMIT
) -> dict[int, list[Delivery]]:
    """The first ``limit`` of each message's ``replies``, by message id, one query per 100."""
    found: dict[int, list[Delivery]] = {message.id: [] for message in messages}
    in_chats = [message for message in messages if message.phone_key_reversed]
    for message_pk, reply in _per_message(
        session, in_chats, _replies_statement, _replies_values, limit=limit
    ):
        found[message_pk].append(reply)
    return found


@cache
def _replies_statement(count: int) -> Select:
    # One branch per message, each read from the chat's (key, type, id) index from the
    # message on and cut at its limit, then joined: a window over every reply in a busy
    # chat would read them all, for each message.
    def replies_after(n: int) -> Select:
        return (
            select(_message_pk(n), Delivery.id.label("delivery_id"))
            .where(
                Delivery.phone_key_reversed == bindparam(f"key_{n}"),
                Delivery.type == "ReceivedCallback",
                Delivery.from_me.is_(False),
                Delivery.id > bindparam(f"after_{n}", type_=Integer),
            )
            .order_by(Delivery.id)
            .limit(bindparam("limit", type_=Integer))
        )

    pairs = _joined([replies_after(n) for n in range(count)])
    return (
        select(pairs.c.message_pk, Delivery)
        .join(Delivery, Delivery.id == pairs.c.delivery_id)
        .order_by(pairs.c.message_pk, Delivery.id)
    )


def _replies_values(n: int, message: Message) -> dict:
    return {
        f"message_pk_{n}": message.id,
        f"key_{n}": message.phone_key_reversed,
        f"after_{n}": message.first_delivery_id,
    }


def states_of(session: Session, deliveries: list[Delivery]) -> dict[int, str]:
    """The state of the message each callback is about, by callback id (where it has one)."""
    return {
        delivery_id: news.message.state
        for delivery_id, news in messages_of(session, deliveries).items()
    }


def _conditions(shape: _SearchShape) -> list[ColumnElement]:
    # Every filter but the phone, which the statement looks up in two ways.
    conditions = []
    if shape.instance:
        conditions.append(Message.instance_id == bindparam("instance"))
    if shape.state:
        conditions.append(Message.state == bindparam("state"))
    if shape.category:
        conditions.append(Message.failure_category == bindparam("category"))
    if shape.message_id:
        pasted = bindparam("message_id")
        conditions.append(or_(Message.message_id == pasted, Message.zaap_id == pasted))
    if shape.since:
        conditions.append(Message.first_at >= bindparam("since", type_=UTCDateTime))
    if shape.until:
        conditions.append(Message.first_at < bindparam("until", type_=UTCDateTime))
    if shape.before:
        conditions.append(Message.id < bindparam("before", type_=Integer))
    return conditions


@dataclass(frozen=True)
class News:
    """A message and when its latest callback arrived (its first evidence, once pruned)."""

    message: Message
    at: datetime

    @classmethod
    def of(cls, message: Message, at: datetime | None) -> "News":
        """``message`` with the arrival time of its latest callback, if that is still stored."""
        return cls(message, at or message.first_at)


def message_of(session: Session, delivery: Delivery) -> Message | None:
    """The message ``delivery`` is evidence of, or None when it is about no message we sent."""
    news = messages_of(session, [delivery]).get(delivery.id)
    return news.message if news else None


def messages_of(session: Session, deliveries: list[Delivery]) -> dict[int, News]:
    """The message each callback is about, with its latest news, by callback id; one query."""
    if not deliveries:
        return {}
    ids = [delivery.id for delivery in deliveries]
    rows = session.execute(_messages_of_statement(), {"ids": ids})
    return {row[0]: News.of(row[1], row[2]) for row in rows}


@cache
def _messages_of_statement() -> Select:
    # Built once: the live feed asks this for every batch of new rows, and building the
    # statement (its alias above all) costs several times what running it does.
    news_at = aliased(Delivery)
    return (
        select(Delivery.id, Message, news_at.received_at)
        .select_from(Delivery)
        .join(
            Message,
            # A status is about the first message its ids[] name, stored as its message_id.
            and_(
                Message.instance_id == func.coalesce(Delivery.instance_id, ""),
                Message.message_id == Delivery.message_id,
            ),
        )
        .outerjoin(news_at, news_at.id == Message.last_delivery_id)
        .where(Delivery.id.in_(bindparam("ids", expanding=True)))
    )


def latest(session: Session, limit: int) -> list[News]:
    """The ``limit`` messages with the newest news, newest first."""
    news_at = aliased(Delivery)
    query = (
        select(Message, news_at.received_at)
        .outerjoin(news_at, news_at.id == Message.last_delivery_id)
        .order_by(Message.last_delivery_id.desc())
        .limit(limit)
    )
    return [News.of(message, at) for message, at in session.execute(query)]


# Callbacks about the instance itself, not about any message.
INSTANCE_EVENTS = ("ConnectedCallback", "DisconnectedCallback", "ProxyCallback")


def instance_events(session: Session) -> list[Delivery]:
    """The latest connected, disconnected or proxy callback of each instance, by instance."""
    newest = (
        select(func.max(Delivery.id))
        .where(Delivery.type.in_(INSTANCE_EVENTS))
        .group_by(Delivery.instance_id)
    )
    query = select(Delivery).where(Delivery.id.in_(newest)).order_by(Delivery.instance_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class FailureCount:
    """The failed messages of one category, by row id."""

    message_ids: tuple[int, ...]

    @property
    def count(self) -> int:
        """How many they are."""
        return len(self.message_ids)


def failure_counts(session: Session, since: datetime) -> dict[str, FailureCount]:
    """The messages that failed since ``since`` and still stand failed, per failure category."""
    # Only messages with news since then can have failed since then: the index on
    # last_delivery_id keeps this to a day's messages, however long the history. The
    # first callback since then is found in the index on received_at, without a scan.
    first_id = (
        select(Delivery.id)
        .where(Delivery.received_at >= since)
        .order_by(Delivery.received_at)
        .limit(1)
    )
    # A failed message with no error text (only written by hand) is of no known category.
    category = func.coalesce(Message.failure_category, failures.OTHER)
    rows = session.execute(
        # The ids, not only their number: the live feed counts each message once.
        select(category, func.aggregate_strings(Message.id.cast(String), " "))
        .where(
            Message.last_delivery_id >= first_id.scalar_subquery(),
            Message.state == states.FAILED,
            Message.failed_at >= since,
        )
        .group_by(category)
    )
    return {code: FailureCount(tuple(sorted(map(int, ids.split())))) for code, ids in rows}
