"""The daily prune inside a real `zapi-dashboard serve`: one worker of two does it, once."""

import re
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from dashboard import leases, retention
from dashboard.extensions import db
from dashboard.models import Delivery, JobLease, utcnow

from .support import SEED, start_server, stop_server, store_all, wait_until

CHECK_SECONDS = 0.2
PRUNED = re.compile(
    r"Pruned (\d+) callback\(s\) received before \S+ \(pid (\d+)\), (\d+) message\(s\) left"
    r" without callbacks, (\d+) phone-to-LID pair\(s\) not seen since and (\d+) refused"
    r" webhook request\(s\) received before then\."
)


def store_old(count: int, tag: str) -> None:
    ids = [row.id for row in store_all([{**SEED, "messageId": f"{tag}{n}"} for n in range(count)])]
    with db.writing() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(received_at=utcnow() - timedelta(days=100))
        )


def stored() -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(Delivery))


def test_create_app_starts_no_pruner(app):
    assert "pruner" not in [thread.name for thread in threading.enumerate()]


def test_one_of_two_workers_prunes_once_a_day(app):
    store_old(3, "first")
    store_all([{**SEED, "messageId": "recent"}])
    server = start_server(
        Path(app.config["DATA_DIR"]),
        "--workers",
        "2",
        "--threads",
        "4",
        env={"DASHBOARD_RETENTION_DAYS": "30", "DASHBOARD_PRUNE_CHECK_SECONDS": str(CHECK_SECONDS)},
    )
    try:
        wait_until(lambda: stored() == 1, message="the server to prune the old callbacks")
        wait_until(lambda: PRUNED.search(server.log()), message="the prune to be logged")
        workers = set(re.findall(r"Booting worker with pid: (\d+)", server.log()))
        ((deleted, pid, messages, pairs, refused),) = PRUNED.findall(server.log())
        assert (deleted, messages, pairs, refused) == ("3", "3", "0", "0")
        assert pid in workers
        with db.reading() as session:
            assert f":{pid}:" in leases.get(session, retention.LEASE_NAME).holder

        # Both workers keep checking, and neither prunes again the same day.
        store_old(2, "second")
        with pytest.raises(AssertionError, match="timed out"):
            wait_until(
                lambda: stored() < 3 or len(PRUNED.findall(server.log())) > 1,
                deadline=20 * CHECK_SECONDS,
                message="a second prune on the same day",
            )

        # A day later the next run is due, and again exactly one worker does it.
        with db.writing() as session:
            session.execute(update(JobLease).values(last_finished_at=utcnow() - timedelta(days=2)))
        wait_until(lambda: stored() == 1, message="the next day's prune")
        wait_until(lambda: len(PRUNED.findall(server.log())) == 2, message="it to be logged")
        assert [found[0] for found in PRUNED.findall(server.log())] == ["3", "2"]
    finally:
        stop_server(server)
    assert server.process.returncode == 0
    assert "Traceback" not in server.log()
    assert "Pruning failed" not in server.log()
