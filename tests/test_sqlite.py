import json
import threading
from contextlib import ExitStack

import pytest
from sqlalchemy import func, select, text

from dashboard import create_app, deliveries
from dashboard.extensions import callback_writer, db
from dashboard.models import Delivery
from dashboard.payloads import parse

from .support import SEED

# Pragmas, locks and transactions of SQLite itself.
pytestmark = pytest.mark.sqlite_only

THREADS = 50


def pragmas(connection):
    def value(name):
        return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

    return {
        "journal_mode": value("journal_mode"),
        "busy_timeout": value("busy_timeout"),
        "synchronous": value("synchronous"),
        "foreign_keys": value("foreign_keys"),
    }


def test_every_pooled_connection_has_the_pragmas(app):
    # Hold many connections at once so the pool has to open fresh ones.
    with ExitStack() as stack:
        connections = [stack.enter_context(db.engine.connect()) for _ in range(12)]
        for connection in connections:
            found = pragmas(connection)
            assert found["journal_mode"] == "wal"
            assert found["busy_timeout"] >= 10_000
            assert found["synchronous"] == 1  # NORMAL
            assert found["foreign_keys"] == 1


def test_synchronous_full_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHBOARD_SQLITE_SYNCHRONOUS", "FULL")
    create_app({"DATA_DIR": str(tmp_path)})
    try:
        with db.engine.connect() as connection:
            assert pragmas(connection)["synchronous"] == 2  # FULL
    finally:
        db.engine.dispose()


def test_writes_begin_immediate_and_reads_deferred(app):
    statements = []

    def remember(conn, cursor, statement, *args):
        statements.append(statement)

    from sqlalchemy import event

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        with db.writing() as session:
            session.execute(text("SELECT 1"))
        with db.reading() as session:
            session.execute(text("SELECT 1"))
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]


def run_in_threads(work):
    errors = []
    start = threading.Barrier(THREADS)

    def guarded(index):
        start.wait()
        try:
            work(index)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def callback(index, prefix):
    return parse(json.dumps({**SEED, "messageId": f"{prefix}{index}"}).encode())


def test_fifty_threads_writing_own_transactions_are_never_locked_out(app):
    def write(index):
        with db.writing() as session:
            # Read before writing: safe only because the transaction began IMMEDIATE.
            session.scalar(select(func.count()).select_from(Delivery))
            deliveries.record(session, [callback(index, "direct-")])

    assert run_in_threads(write) == []
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == THREADS


def test_fifty_threads_through_the_batch_writer_are_never_locked_out(app):
    assert run_in_threads(lambda i: callback_writer.store(callback(i, "batch-"), 60)) == []
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == THREADS
