"""Messages folded from their callbacks: the state machine, its order, and the stored rows."""

import json
import threading
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select, text

from dashboard import migrate
from dashboard.extensions import db
from dashboard.messages import states, store
from dashboard.messages.states import Evidence, MessageFacts
from dashboard.models import Message

from .support import store_all

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)


def sent(message_id="M1", **fields):
    """Our DeliveryCallback for ``message_id``, 0 s after T0 unless told."""
    return {
        "type": "DeliveryCallback",
        "instanceId": "I1",
        "phone": "5544999999999",
        "messageId": message_id,
        "zaapId": f"Z-{message_id}",
        "momment": MS0,
        **fields,
    }


def status(word, seconds, *ids, **fields):
    """A MessageStatusCallback of ``word`` for ``ids``, ``seconds`` after T0."""
    return {
        "type": "MessageStatusCallback",
        "instanceId": "I1",
        "phone": "5544999999999",
        "status": word,
        "ids": list(ids or ["M1"]),
        "momment": MS0 + seconds * 1000,
        **fields,
    }


def received(words, message_id, from_me, **fields):
    """A ReceivedCallback in the chat of ``sent()``: ours echoed back, or the customer's."""
    return {
        "type": "ReceivedCallback",
        "instanceId": "I1",
        "messageId": message_id,
        "phone": "5544999999999",
        "fromMe": from_me,
        "text": {"message": words},
        **fields,
    }


def echo(message_id="M1", words="Seu pedido saiu para entrega", **fields):
    """Our own message ``message_id`` echoed back by Z-API's received webhook."""
    return received(words, message_id, True, **fields)


def reply(words="chegou, obrigado", message_id="C1", **fields):
    """The customer's message in the chat, after ours."""
    return received(words, message_id, False, **fields)


def message(message_id="M1") -> Message:
    with db.reading() as session:
        return session.scalars(select(Message).where(Message.message_id == message_id)).one()


# --- the fold, pure -------------------------------------------------------------------------

STEP_WORDS = st.sampled_from(states.STATES)
EVIDENCE = st.builds(
    Evidence,
    instance_id=st.just("I1"),
    message_id=st.sampled_from(["M1", "M2"]),
    step=STEP_WORDS,
    at=st.integers(0, 5).map(lambda s: T0 + timedelta(seconds=s)),
    delivery_id=st.integers(1, 10**6),
    zaap_id=st.none() | st.sampled_from(["Z1", "Z2"]),
    phone=st.none() | st.sampled_from(["5544999999999", "123456789@lid"]),
    content=st.none() | st.sampled_from(["hello", "olá"]),
    error=st.none()
    | st.sampled_from(["Timeout on send message", "Phone number does not exist", "Ground control"]),
    error_code=st.none() | st.just("SHADOW_BAN"),
)


@given(st.lists(EVIDENCE, max_size=12), st.randoms(use_true_random=False))
def test_the_same_callbacks_give_the_same_message_in_any_order(evidence, rng):
    repeated = evidence + evidence[: len(evidence) // 2]
    shuffled = list(repeated)
    rng.shuffle(shuffled)
    assert states.fold(shuffled) == states.fold(repeated)
    # Folding in two parts, as two write batches do, gives the same too.
    half = len(shuffled) // 2
    first = states.fold(shuffled[:half])
    assert {**first, **states.fold(shuffled[half:], first)} == states.fold(repeated)


@given(st.lists(EVIDENCE.filter(lambda e: e.message_id == "M1"), min_size=1, max_size=12))
def test_a_message_never_moves_backwards(evidence):
    facts = MessageFacts("I1", "M1")
    for item in evidence:
        before = facts.state if facts.steps else None
        facts = facts.with_evidence(item)
        if before in states.PROGRESS and facts.state in states.PROGRESS:
            assert states.PROGRESS.index(facts.state) >= states.PROGRESS.index(before)
        if before in states.RECEIPTS:
            assert facts.state != states.FAILED


def test_a_failure_gives_way_only_to_evidence_of_receipt():
    failed = Evidence("I1", "M1", states.FAILED, T0, 1, error="Timeout on send message")
    facts = states.fold([failed])[("I1", "M1")]
    assert facts.state == "failed"
    assert facts.with_evidence(Evidence("I1", "M1", "sent", T0, 2)).state == "failed"
    read = facts.with_evidence(Evidence("I1", "M1", "read", T0, 3))
    assert read.state == "read"
    assert read.error == "Timeout on send message"  # the page shows both


def test_a_momment_that_cannot_be_a_real_time_gives_way_to_the_arrival_time():
    arrived = datetime(2026, 12, 1, tzinfo=UTC)
    assert states.evidence_time(MS0, arrived) == T0
    assert states.evidence_time(27_000_000_000_000, arrived) == arrived  # the year 2825
    assert states.evidence_time(1_000, arrived) == arrived  # 1970
    assert states.evidence_time(None, arrived) == arrived
    assert states.evidence_time(2**62, arrived) == arrived


# --- stored with the callbacks ---------------------------------------------------------------


def test_each_callback_updates_its_message_in_the_write_that_stores_it(app):
    store_all([sent()])
    assert (message().state, message().zaap_id, message().queued_at) == ("queued", "Z-M1", T0)
    store_all([status("SENT", 1), status("RECEIVED", 2)])
    store_all([status("RECEIVED", 3, phoneDevice=19), status("READ", 9)])
    store_all([status("SENT", 20, phoneDevice=35)])  # late: changes nothing but its count
    row = message()
    assert row.state == "read"
    assert (row.sent_at, row.received_at, row.read_at) == (
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=9),
    )
    assert (row.queued_count, row.sent_count, row.received_count, row.read_count) == (1, 2, 2, 1)


def test_a_repeated_callback_is_no_new_evidence(app):
    store_all([sent(), status("RECEIVED", 2)])
    store_all([sent(), status("RECEIVED", 2)])  # Z-API resending the same bodies
    assert (message().queued_count, message().received_count) == (1, 1)


def test_one_status_with_several_ids_moves_each_message(app):
    store_all([sent("M1"), sent("M2"), status("READ", 5, "M1", "M2", "M3")])
    assert [message(m).state for m in ("M1", "M2", "M3")] == ["read", "read", "read"]
    assert message("M3").zaap_id is None  # known only from its status so far


def test_a_failed_send_keeps_its_reason(app):
    store_all(
        [sent(error="The message was not sent due to a likely shadow ban", errorCode="SHADOW_BAN")]
    )
    row = message()
    assert (row.state, row.error_code) == ("failed", "SHADOW_BAN")
    assert row.error.startswith("The message was not sent")


def test_our_own_echo_gives_the_message_its_words_and_the_customers_messages_none(app):
    echo = {
        "type": "ReceivedCallback",
        "instanceId": "I1",
        "messageId": "M1",
        "phone": "5544999999999",
        "fromMe": True,
        "fromApi": True,
        "momment": MS0,
        "text": {"message": "Seu pedido saiu para entrega"},
    }
    reply = {**echo, "messageId": "C1", "fromMe": False, "text": {"message": "obrigado"}}
    store_all([echo, reply])
    assert message().content == "Seu pedido saiu para entrega"
    with db.reading() as session:
        assert session.scalars(select(Message.message_id)).all() == ["M1"]


def test_events_that_are_not_about_a_sent_message_make_none(app):
    store_all(
        [
            {"type": "PresenceChatCallback", "phone": "5544999999999", "status": "COMPOSING"},
            {"type": "DisconnectedCallback", "instanceId": "I1", "momment": MS0},
            status("READ_BY_ME", 1, "C1"),
            {"type": "DeliveryCallback", "instanceId": "I1"},  # no messageId
        ]
    )
    with db.reading() as session:
        assert session.scalars(select(Message)).all() == []


def test_the_same_callbacks_stored_in_another_order_make_the_same_row(app):
    bodies = [
        sent(),
        status("SENT", 1),
        status("READ", 4),
        status("RECEIVED", 2),
        status("SENT", 7, phoneDevice=3),
    ]
    for body in reversed(bodies):
        store_all([body])
    backwards = _comparable(message())
    with db.writing() as session:
        session.execute(text("DELETE FROM messages"))
        session.execute(text("DELETE FROM deliveries"))
    for body in bodies:
        store_all([body])
    assert _comparable(message()) == backwards


def _comparable(row: Message) -> dict:
    ignored = {"id", "first_delivery_id", "last_delivery_id"}
    return {c.name: getattr(row, c.name) for c in Message.__table__.c if c.name not in ignored}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(EVIDENCE, min_size=1, max_size=12),
    st.lists(st.integers(1, 4), min_size=1, max_size=6),
)
def test_the_stored_row_is_the_pure_fold_however_the_writes_split_it(app, evidence, cuts):
    # The database merges each write's fold into the stored row in SQL; it must agree with
    # folding every callback at once in Python, on SQLite and on PostgreSQL alike.
    with db.writing() as session:
        session.execute(text("DELETE FROM messages"))
    start = 0
    for size in [*cuts, len(evidence)]:
        if start < len(evidence):
            with db.writing() as session:
                store.merge(session, evidence[start : start + size])
        start += size
    expected = {key: store.columns(facts) for key, facts in states.fold(evidence).items()}
    with db.reading() as session:
        stored = {
            (row.instance_id, row.message_id): {
                name: getattr(row, name) for name in expected[row.instance_id, row.message_id]
            }
            for row in session.scalars(select(Message))
        }
    assert stored == expected


def test_the_migration_builds_the_messages_of_callbacks_already_stored(tmp_path):
    insert = (
        "INSERT INTO deliveries (received_at, dedup_key, receive_count, type, instance_id,"
        " message_id, raw) VALUES ('2026-05-01 12:00:30', :key, 1, :type, 'I1', :mid, :raw)"
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0005")
        for number, body in enumerate(
            [
                sent(),
                status("RECEIVED", 3),
                status("READ", 8),
                sent("M2", error="Timeout on send message"),
            ]
        ):
            connection.execute(
                text(insert),
                {
                    "key": f"k{number}",
                    "type": body["type"],
                    "mid": body.get("messageId"),
                    "raw": json.dumps(body),
                },
            )
    assert migrate.upgrade(engine) == migrate.head_revision()
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT message_id, state, received_count, error FROM messages ORDER BY message_id"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("M1", "read", 1, None),
        ("M2", "failed", 0, "Timeout on send message"),
    ]


def test_writers_racing_on_postgresql_lose_no_evidence(pg_app):
    # Each thread's transaction stands for another instance: no shared write lock.
    errors = []

    def write(thread: int) -> None:
        try:
            for batch in range(5):
                device = thread * 10 + batch
                store_all(
                    [status("RECEIVED", 2, "M1", "M2", phoneDevice=device), sent(f"T{device}")]
                )
        except Exception as exc:  # a deadlock or a lost update, reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert [message(m).received_count for m in ("M1", "M2")] == [30, 30]
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 32
