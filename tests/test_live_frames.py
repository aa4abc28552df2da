"""What each live `delivery` frame says of its message, and that a batch costs one query for it."""

import json
import os
import queue
import threading

import pytest
from sqlalchemy import event

from dashboard import deliveries, live
from dashboard.extensions import db
from dashboard.live import Hub

from .support import store_all
from .test_messages import echo, reply, sent, status

CONNECTED = {"type": "ConnectedCallback", "instanceId": "I1", "connected": True, "phone": "5544"}
REPLY = reply("oi")
PRESENCE = {
    "type": "PresenceChatCallback",
    "instanceId": "I1",
    "phone": "5544",
    "status": "AVAILABLE",
}
ECHO = echo("M9", "Seu pedido saiu")


def frames_of(payloads: list[dict]) -> list[dict]:
    """The `delivery` frames of ``payloads`` stored together, as the poller builds them."""
    stored = store_all(payloads)
    with db.reading() as session:
        rows = deliveries.by_ids(session, [recorded.id for recorded in stored])
        built = live.delivery_frames(session, rows)
    assert [row_id for row_id, _ in built] == [recorded.id for recorded in stored]
    decoded = [json.loads(frame) for _, frame in built]
    assert {frame["event"] for frame in decoded} == {"delivery"}
    return [frame["data"] for frame in decoded]


def test_a_delivery_callbacks_frame_carries_its_queued_message(app):
    (data,) = frames_of([sent("M1")])
    message = data["message"]
    assert data["messageState"] == message["state"] == "queued"
    assert message["messageId"] == "M1"
    assert message["instanceId"] == "I1"
    assert message["phoneDisplay"] == "+55 44 99999-9999"
    assert message["failureCategory"] is None
    assert message["failedAt"] is None
    assert message["latestDeliveryId"] == data["id"]
    assert message["latestAt"] == data["receivedAt"]
    assert isinstance(message["id"], int)


def test_each_status_frame_carries_the_message_as_it_stands_when_read(app):
    first, received, read = frames_of([sent("M1"), status("RECEIVED", 2), status("READ", 3)])
    # Read together after all three were stored: each frame shows the latest state.
    assert {frame["messageState"] for frame in (first, received, read)} == {"read"}
    assert first["message"]["id"] == received["message"]["id"] == read["message"]["id"]
    assert read["message"]["latestDeliveryId"] == read["id"]


def test_a_status_about_several_messages_names_the_first_of_its_ids(app):
    # The first as Z-API listed them, whatever their order as text.
    *_, both = frames_of([sent("M2"), sent("M1"), status("RECEIVED", 2, "M2", "M1")])
    assert both["message"]["messageId"] == "M2"
    assert both["messageState"] == "received"


def test_a_failed_send_carries_its_failure_category(app):
    (data,) = frames_of([sent("M1", error="Phone number does not exist")])
    assert data["messageState"] == "failed"
    assert data["message"]["failureCategory"] == "invalid-number"
    assert data["message"]["error"] == "Phone number does not exist"
    # When it failed: the feed counts only the failures of its last 24 hours.
    assert data["message"]["failedAt"] == "2026-05-01T12:00:00Z"


def test_a_failure_that_gave_way_to_a_receipt_keeps_its_category_and_is_no_longer_failed(app):
    *_, received = frames_of([sent("M1", error="Timeout on send message"), status("RECEIVED", 2)])
    assert received["messageState"] == "received"
    assert received["message"]["failureCategory"] == "timeout"


def test_our_own_echo_carries_its_words(app):
    (data,) = frames_of([ECHO])
    assert data["message"]["content"] == "Seu pedido saiu"
    assert data["messageState"] == "queued"


def test_callbacks_about_no_message_of_ours_carry_none(app):
    reply, connected, presence = frames_of([REPLY, CONNECTED, PRESENCE])
    for data in (reply, connected, presence):
        assert data["message"] is None
        assert data["messageState"] is None


@pytest.fixture
def poller_statements():
    """The SQL statements run on this thread while the block runs."""
    seen: list[str] = []
    thread = threading.current_thread()

    def count(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread() is thread:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    yield seen
    event.remove(db.engine, "before_cursor_execute", count)


def emitted(messages: int, poller_statements: list[str]) -> tuple[list[dict], int]:
    """Store a send, its READ and a reply per message; read them in one poll of a hub.

    Returns the frames that reached its socket and how many queries the poll ran.
    """
    own_hub = Hub(db)
    own_hub._owner_pid = os.getpid()  # no poller thread: this test drives the read itself
    subscriber = own_hub.subscribe()
    payloads = []
    for index in range(messages):
        payloads += [
            sent(f"{messages}-{index}"),
            status("READ", 1, f"{messages}-{index}"),
            {**REPLY, "messageId": f"reply-{messages}-{index}"},
        ]
    store_all(payloads)
    poller_statements.clear()
    own_hub._emit()
    queries = sum(1 for statement in poller_statements if statement.lstrip().startswith("SELECT"))
    assert sum(1 for statement in poller_statements if "messages" in statement) == 1
    frames = []
    while True:
        try:
            frames.append(json.loads(subscriber.inbox.get_nowait()[1])["data"])
        except queue.Empty:
            break
    own_hub.unsubscribe(subscriber)
    return frames, queries


def test_a_poll_finds_the_messages_of_its_whole_batch_in_one_query(app, poller_statements):
    few, few_queries = emitted(1, poller_statements)
    many, many_queries = emitted(40, poller_statements)
    assert len(few) == 3
    assert len(many) == 120
    # The rows (and the late ids below the cursor), and one query for every row's message.
    assert few_queries == many_queries
    assert [frame["messageState"] for frame in many[:3]] == ["read", "read", None]
    assert many[0]["message"]["id"] == many[1]["message"]["id"]
    assert many[2]["message"] is None


def test_the_catch_up_frames_carry_the_message_too(app, poller_statements):
    stored = store_all([sent("M1"), status("READ", 1), REPLY])
    with db.reading() as session:
        rows = deliveries.newer_than(session, 0, 200)
        poller_statements.clear()
        built = live.delivery_frames(session, rows)
    assert [statement for statement in poller_statements if "SELECT" in statement] == [
        poller_statements[-1]
    ]
    assert "messages" in poller_statements[-1]
    states = [json.loads(frame)["data"]["messageState"] for _, frame in built]
    assert states == ["read", "read", None]
    assert [row_id for row_id, _ in built] == [recorded.id for recorded in stored]
