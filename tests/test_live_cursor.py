"""The live feed's cursor and hub, in this process, on a real SQLite file."""

import json
import os
import queue
import threading
import time

import pytest
from sqlalchemy import event

from dashboard.extensions import callback_writer, db, hub
from dashboard.live import GOING_AWAY, LATE_COMMIT_SECONDS, Cursor
from dashboard.payloads import parse

from .support import SEED

DEADLINE = 30.0


def test_contiguous_ids_move_low_along():
    cursor = Cursor(10)
    assert not cursor.is_new(10)
    assert cursor.is_new(11)
    for row_id in (11, 12, 13):
        cursor.mark(row_id)
    assert not cursor.is_new(12)
    cursor.advance(now=0.0)
    assert cursor.low == 13
    assert not cursor.is_new(13)
    assert cursor.is_new(14)


def test_advancing_with_nothing_emitted_changes_nothing():
    cursor = Cursor(5)
    cursor.advance(now=0.0)
    cursor.advance(now=LATE_COMMIT_SECONDS * 10)
    assert cursor.low == 5


def test_a_gap_holds_low_until_late_commits_have_had_their_time():
    cursor = Cursor(0)
    cursor.mark(1)
    cursor.mark(3)
    cursor.advance(now=100.0)
    assert cursor.low == 1  # 2 is missing: maybe still being committed elsewhere
    cursor.advance(now=100.0 + LATE_COMMIT_SECONDS - 0.01)
    assert cursor.low == 1
    assert cursor.is_new(2)
    assert not cursor.is_new(3)
    cursor.advance(now=100.0 + LATE_COMMIT_SECONDS)
    assert cursor.low == 3  # 2 never came: passed for good, and 3 with it
    assert not cursor.is_new(2)


def test_a_late_id_below_the_highest_emitted_is_still_new():
    cursor = Cursor(0)
    cursor.mark(1)
    cursor.mark(5)
    cursor.advance(now=0.0)
    assert cursor.low == 1
    # 3 committed after 5: above low, never emitted, so it is new.
    assert cursor.is_new(3)
    cursor.mark(3)
    assert not cursor.is_new(3)
    cursor.advance(now=1.0)
    assert cursor.low == 1  # 2 is still missing
    cursor.mark(2)
    cursor.advance(now=2.0)
    assert cursor.low == 3  # 4 is missing now; its wait starts at 2.0
    assert cursor.is_new(4)
    assert not cursor.is_new(5)
    cursor.advance(now=2.0 + LATE_COMMIT_SECONDS - 0.01)
    assert cursor.low == 3
    cursor.mark(4)
    cursor.advance(now=2.0 + LATE_COMMIT_SECONDS - 0.01)
    assert cursor.low == 5


def test_a_gap_filled_in_time_does_not_start_a_new_wait_for_the_next_one():
    cursor = Cursor(0)
    cursor.mark(2)
    cursor.advance(now=0.0)  # the wait for 1 starts
    cursor.mark(1)
    cursor.mark(4)
    cursor.advance(now=5.0)
    assert cursor.low == 2
    # 3's wait starts now, not when 1's did.
    cursor.advance(now=LATE_COMMIT_SECONDS + 1.0)
    assert cursor.low == 2
    cursor.advance(now=5.0 + LATE_COMMIT_SECONDS)
    assert cursor.low == 4


def store(message_id: str) -> int:
    payload = {**SEED, "messageId": message_id}
    return callback_writer.store(parse(json.dumps(payload).encode()), DEADLINE).id


def next_frame(subscriber, deadline: float):
    try:
        return subscriber.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise AssertionError("no frame reached the subscriber in time") from None


@pytest.fixture
def subscriber(app):
    subscribed = hub.subscribe()
    yield subscribed
    hub.unsubscribe(subscribed)


def test_a_stored_callback_reaches_the_subscribers_inbox(subscriber):
    deadline = time.monotonic() + DEADLINE
    row_id = store("hub-1")
    item = next_frame(subscriber, deadline)
    assert isinstance(item, tuple)
    assert item[0] == row_id
    frame = json.loads(item[1])
    assert frame["event"] == "delivery"
    assert frame["data"]["id"] == row_id
    assert frame["data"]["messageId"] == "hub-1"


def test_every_subscriber_gets_every_row_once_in_order(app):
    subscribers = [hub.subscribe() for _ in range(3)]
    try:
        ids = [store(f"hub-order-{i}") for i in range(20)]
        deadline = time.monotonic() + DEADLINE
        for subscriber in subscribers:
            assert [next_frame(subscriber, deadline)[0] for _ in ids] == ids
            assert subscriber.inbox.empty()
    finally:
        for subscriber in subscribers:
            hub.unsubscribe(subscriber)


def test_close_all_asks_every_socket_to_leave_with_its_code(subscriber):
    hub.close_all(GOING_AWAY)
    assert subscriber.inbox.get(timeout=DEADLINE) == GOING_AWAY


def test_the_poller_queries_only_while_a_socket_is_open(app):
    poller_statements = []
    lock = threading.Lock()

    def count(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name == "live-poller":
            with lock:
                poller_statements.append(statement)

    def statements_while_storing(seconds: float) -> int:
        with lock:
            poller_statements.clear()
        end = time.monotonic() + seconds
        index = 0
        while time.monotonic() < end:
            store(f"idle-{time.monotonic_ns()}-{index}")
            index += 1
            time.sleep(0.05)
        with lock:
            return len(poller_statements)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        # With a socket open, the poller reads each committed row.
        subscriber = hub.subscribe()
        try:
            assert statements_while_storing(1.0) > 0
        finally:
            hub.unsubscribe(subscriber)
        # A read that was under way when the last socket left may still finish.
        statements_while_storing(0.2)
        # With no socket open, rows keep being committed, and the poller reads nothing.
        assert statements_while_storing(1.0) == 0
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_rows_past_a_held_gap_are_not_stalled_by_already_sent_ones(app, monkeypatch):
    from sqlalchemy import delete

    from dashboard import live
    from dashboard.live import Hub
    from dashboard.models import Delivery

    monkeypatch.setattr(live, "BATCH", 3)
    ids = [store(f"gap-{index}") for index in range(8)]
    with db.writing() as session:  # a gap, as PostgreSQL leaves for an id that never commits
        session.execute(delete(Delivery).where(Delivery.id == ids[0]))
    own_hub = Hub(db)
    own_hub._owner_pid = os.getpid()  # no poller thread: this test drives the reads itself
    inbox = own_hub.subscribe()
    own_hub._cursor = Cursor(ids[0] - 1)  # as if subscribed just before the gap
    for _ in range(3):  # each read brings at most BATCH new rows
        own_hub._emit()
    received = []
    while True:
        try:
            received.append(inbox.inbox.get_nowait()[0])
        except queue.Empty:
            break
    assert received == ids[1:]
    own_hub.unsubscribe(inbox)
