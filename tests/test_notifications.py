"""On PostgreSQL a row stored by one instance wakes the others' live feeds by NOTIFY."""

import json
import queue

import pytest
from sqlalchemy import text

from dashboard import live
from dashboard.database import Database
from dashboard.live import Hub
from dashboard.payloads import parse
from dashboard.writer import BatchWriter

from .support import POSTGRES_URL, SEED, wait_until

LISTENING = (
    "SELECT pid FROM pg_stat_activity"
    " WHERE datname = current_database() AND query = 'LISTEN zapi_dashboard_deliveries'"
)


@pytest.fixture
def instances(pg_app, monkeypatch):
    """Two instances on one PostgreSQL database: one stores, the other has a live feed.

    The feed never reads on its own schedule, so only a notification can bring it a row.
    """
    monkeypatch.setattr(live, "FALLBACK_READ_SECONDS", 3600.0)
    storing, watching = Database(), Database()
    for instance in (storing, watching):
        instance.init(POSTGRES_URL)
    storing_hub = Hub(storing)
    writer = BatchWriter(storing.writing, in_transaction=storing_hub.announce)
    watching_hub = Hub(watching)
    feed = watching_hub.subscribe()
    wait_until(lambda: listeners(storing), message="the feed to LISTEN")
    yield writer, feed, storing
    watching_hub.unsubscribe(feed)
    for instance in (storing, watching):
        instance.engine.dispose()


def listeners(database: Database) -> set[int]:
    """The server process ids of the connections listening for stored rows."""
    with database.engine.connect() as connection:
        return set(connection.scalars(text(LISTENING)))


def store_one(writer: BatchWriter, message_id: str) -> int:
    """Store a callback through ``writer``; its row id."""
    callback = parse(json.dumps({**SEED, "messageId": message_id}).encode())
    return writer.store(callback, timeout=60).id


def next_row_id(feed) -> int:
    """The id of the next row the feed receives, waiting generously."""
    try:
        row_id = feed.inbox.get(timeout=60).id
    except queue.Empty:
        raise AssertionError("the live feed did not receive the row") from None
    return row_id


def test_a_row_stored_by_one_instance_wakes_the_others_feed(instances):
    writer, feed, _ = instances
    for index in range(3):
        row_id = store_one(writer, f"notified-{index}")
        assert next_row_id(feed) == row_id


def test_the_feed_listens_again_after_losing_its_connection(instances):
    writer, feed, storing = instances
    before = listeners(storing)
    with storing.engine.connect() as connection:
        connection.execute(text(f"SELECT pg_terminate_backend(pid) FROM ({LISTENING}) AS l"))
    wait_until(
        lambda: (now := listeners(storing)) and not now & before,
        message="a new listening connection",
    )
    row_id = store_one(writer, "after-reconnect")
    assert next_row_id(feed) == row_id
