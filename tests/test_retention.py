"""Retention: pruning in batches, dry runs, the job lease and the daily schedule."""

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from dashboard import create_app, leases, retention
from dashboard.config import ConfigError
from dashboard.database import Database
from dashboard.extensions import db
from dashboard.models import Delivery, JobLease, StatusMessageId, utcnow

from .support import POSTGRES_URL, SEED, STATUS, store_all, wait_until

DAY = timedelta(days=1)


def callback(n: int) -> dict:
    return {**SEED, "messageId": f"M{n}", "zaapId": f"Z{n}"}


def age(ids: list[int], days: int) -> None:
    """Make callbacks look as if they arrived ``days`` ago."""
    with db.writing() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(received_at=utcnow() - timedelta(days=days))
        )


def seed(old: int, new: int, old_days: int = 100) -> tuple[list[int], list[int]]:
    """Store ``old`` callbacks aged ``old_days`` (statuses among them) and ``new`` recent ones."""
    old_payloads = [
        {**STATUS, "ids": [f"S{n}"], "momment": n} if n % 3 == 0 else callback(n)
        for n in range(old)
    ]
    old_ids = [row.id for row in store_all(old_payloads)]
    age(old_ids, old_days)
    new_ids = [row.id for row in store_all([callback(1000 + n) for n in range(new)])]
    return old_ids, new_ids


def stored_ids() -> list[int]:
    with db.reading() as session:
        return list(session.scalars(select(Delivery.id).order_by(Delivery.id)))


def status_owners() -> set[int]:
    with db.reading() as session:
        return set(session.scalars(select(StatusMessageId.delivery_id)))


def lease() -> JobLease | None:
    with db.reading() as session:
        return leases.get(session, retention.LEASE_NAME)


class CountingDatabase(Database):
    """The real database, noting how many callbacks each write transaction removed."""

    def __init__(self, url: str):
        super().__init__()
        self.init(url)
        self.removed: list[int] = []

    def _count(self) -> int:
        with self.reading() as session:
            return session.scalar(select(func.count()).select_from(Delivery))

    @contextmanager
    def writing(self):
        """A write transaction, counted."""
        before = self._count()
        with super().writing() as session:
            yield session
        self.removed.append(before - self._count())


@pytest.fixture
def counting(any_db_app):
    database = CountingDatabase(any_db_app.config["DATABASE_URL"])
    yield database
    database.engine.dispose()


def test_prune_deletes_only_old_rows_and_their_status_ids_in_batches(counting):
    old_ids, new_ids = seed(old=25, new=4)
    assert status_owners() & set(old_ids)
    result = retention.prune(counting, days=30, batch_size=10)
    assert result.deleted == 25
    assert result.finished
    assert stored_ids() == new_ids
    assert not status_owners() & set(old_ids)
    # Lease taken, three batches (10, 10, 5), lease released: no transaction removed more.
    assert max(counting.removed) == 10
    assert [n for n in counting.removed if n] == [10, 10, 5]
    assert len(counting.removed) == 5
    finished = lease()
    assert finished.expires_at is None
    assert finished.last_finished_at is not None
    assert finished.holder


def test_the_cutoff_is_days_before_now(any_db_app):
    _, new_ids = seed(old=3, new=2, old_days=40)
    assert retention.prune(db, days=50).deleted == 0
    assert retention.prune(db, days=39).deleted == 3
    assert stored_ids() == new_ids


def test_a_dry_run_counts_and_deletes_nothing(any_db_app):
    old_ids, new_ids = seed(old=7, new=2)
    result = retention.prune(db, days=30, dry_run=True)
    assert result.deleted == 7
    assert stored_ids() == old_ids + new_ids
    assert lease() is None  # a dry run takes no lease


def test_zero_days_keeps_everything(any_db_app):
    old_ids, new_ids = seed(old=3, new=1, old_days=3000)
    assert retention.prune(db, days=0) == retention.Pruned(None, 0, True)
    assert stored_ids() == old_ids + new_ids


def test_a_held_lease_keeps_others_out_until_it_expires(any_db_app):
    old_ids, new_ids = seed(old=3, new=1)
    now = utcnow()
    with db.writing() as session:
        assert leases.acquire(session, retention.LEASE_NAME, "alive", now, retention.LEASE_DURATION)
    assert retention.prune(db, days=30) is None
    assert stored_ids() == old_ids + new_ids
    # The holder died: its lease runs out, and the next process takes the job over.
    with db.writing() as session:
        session.execute(update(JobLease).values(expires_at=now - timedelta(seconds=1)))
    assert retention.prune(db, days=30, holder="heir").deleted == 3
    assert stored_ids() == new_ids
    assert lease().holder == "heir"


def test_lease_functions(any_db_app):
    now = utcnow()
    minute = timedelta(minutes=1)
    with db.writing() as session:
        assert leases.acquire(session, "job", "a", now, minute)
        assert not leases.acquire(session, "job", "b", now, minute)
        assert leases.renew(session, "job", "a", now + 0.5 * minute, minute)
        assert not leases.renew(session, "job", "b", now, minute)
        # Renewed to now + 1.5 minutes: still held a minute from now, free after two.
        assert not leases.acquire(session, "job", "b", now + minute, minute)
        assert leases.acquire(session, "job", "b", now + 2 * minute, minute)
        assert not leases.renew(session, "job", "a", now + 2 * minute, minute)
        leases.release(session, "job", "a", finished_at=now)  # not a's any more: no effect
        assert leases.get(session, "job").expires_at is not None
        leases.release(session, "job", "b", finished_at=now)
        row = leases.get(session, "job")
        assert (row.holder, row.expires_at, row.last_finished_at) == ("b", None, now)
        assert leases.acquire(session, "job", "c", now, minute)


def test_the_daily_run_waits_a_day_after_the_last_finished_one(any_db_app):
    old_ids, new_ids = seed(old=3, new=1)
    with db.writing() as session:
        leases.acquire(session, retention.LEASE_NAME, "earlier", utcnow(), DAY)
        leases.release(session, retention.LEASE_NAME, "earlier", utcnow() - timedelta(hours=23))
    assert retention.prune(db, days=30, run_every=DAY) is None
    assert stored_ids() == old_ids + new_ids
    with db.writing() as session:
        session.execute(update(JobLease).values(last_finished_at=utcnow() - timedelta(hours=25)))
    assert retention.prune(db, days=30, run_every=DAY).deleted == 3
    assert retention.prune(db, days=30, run_every=DAY) is None


def race(databases: list[Database], runners_each: int) -> list[retention.Pruned | None]:
    """Run the daily prune from several threads at once; every result, in no order."""
    runners = [database for database in databases for _ in range(runners_each)]
    start = threading.Barrier(len(runners))
    results: list = []

    def run(database: Database) -> None:
        start.wait()
        results.append(retention.prune(database, days=30, batch_size=5, run_every=DAY))

    threads = [threading.Thread(target=run, args=(database,)) for database in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == len(runners)
    return results


def test_racing_threads_prune_once(any_db_app):
    _, new_ids = seed(old=12, new=2)
    results = race([db], runners_each=4)
    assert [result.deleted for result in results if result is not None] == [12]
    assert stored_ids() == new_ids


def test_two_instances_on_postgresql_prune_once(pg_app):
    _, new_ids = seed(old=12, new=2)
    instances = [Database() for _ in range(2)]
    for instance in instances:
        instance.init(POSTGRES_URL)
    try:
        results = race(instances, runners_each=2)
    finally:
        for instance in instances:
            instance.engine.dispose()
    assert [result.deleted for result in results if result is not None] == [12]
    assert stored_ids() == new_ids


class LeaseThief(Database):
    """The real database, where another process takes the lease after the first batch."""

    def __init__(self, url: str):
        super().__init__()
        self.init(url)
        self.writes = 0

    @contextmanager
    def writing(self):
        """A write transaction; the third one (after acquire and one batch) is pre-empted."""
        self.writes += 1
        if self.writes == 3:
            with super().writing() as session:
                session.execute(update(JobLease).values(holder="thief", expires_at=utcnow() + DAY))
        with super().writing() as session:
            yield session


def test_a_prune_that_lost_its_lease_stops(any_db_app):
    seed(old=12, new=0)
    thief = LeaseThief(any_db_app.config["DATABASE_URL"])
    try:
        result = retention.prune(thief, days=30, batch_size=5)
    finally:
        thief.engine.dispose()
    assert (result.deleted, result.finished) == (5, False)
    assert len(stored_ids()) == 7
    assert lease().holder == "thief"
    assert lease().last_finished_at is None


def test_a_stopped_prune_releases_its_lease_unfinished(any_db_app):
    seed(old=3, new=0)
    stop = threading.Event()
    stop.set()
    result = retention.prune(db, days=30, stop=stop)
    assert (result.deleted, result.finished) == (0, False)
    assert (lease().expires_at, lease().last_finished_at) == (None, None)
    assert retention.prune(db, days=30, run_every=DAY).deleted == 3


def test_the_background_pruner_prunes_and_stops(any_db_app):
    _, new_ids = seed(old=4, new=1)
    pruner = retention.Pruner(db, days=30, check_seconds=0.05)
    pruner.start()
    try:
        wait_until(lambda: stored_ids() == new_ids, message="the pruner to delete old rows")
    finally:
        pruner.stop()
    assert "pruner" not in [thread.name for thread in threading.enumerate()]


def test_the_background_pruner_is_off_with_zero_days(app):
    pruner = retention.Pruner(db, days=0, check_seconds=0.01)
    pruner.start()
    assert "pruner" not in [thread.name for thread in threading.enumerate()]
    pruner.stop()


def test_a_failing_check_is_logged_without_details_and_never_raises(app, tmp_path, caplog):
    broken = Database()
    broken.init(f"sqlite:///{tmp_path}/empty.sqlite3")  # no tables: every statement fails
    try:
        with caplog.at_level(logging.WARNING, logger="dashboard.retention"):
            assert retention.Pruner(broken, days=30, check_seconds=1).check() is None
    finally:
        broken.engine.dispose()
    (record,) = caplog.records
    assert record.getMessage().startswith("Pruning failed, will retry later: ")
    assert "SELECT" not in record.getMessage()
    assert "INSERT" not in record.getMessage()


def test_retention_days_default_to_90_and_read_from_the_environment(tmp_path, monkeypatch):
    assert config_of(tmp_path)["RETENTION_DAYS"] == 90
    monkeypatch.setenv("DASHBOARD_RETENTION_DAYS", "0")
    assert config_of(tmp_path)["RETENTION_DAYS"] == 0
    monkeypatch.setenv("DASHBOARD_RETENTION_DAYS", "365")
    assert config_of(tmp_path)["RETENTION_DAYS"] == 365


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("RETENTION_DAYS", "-1", "DASHBOARD_RETENTION_DAYS must be a whole number from 0 to 36500"),
        (
            "RETENTION_DAYS",
            "ninety",
            "DASHBOARD_RETENTION_DAYS must be a whole number from 0 to 36500",
        ),
        (
            "RETENTION_DAYS",
            "2.5",
            "DASHBOARD_RETENTION_DAYS must be a whole number from 0 to 36500",
        ),
        (
            "RETENTION_DAYS",
            "true",
            "DASHBOARD_RETENTION_DAYS must be a whole number from 0 to 36500",
        ),
        (
            "PRUNE_CHECK_SECONDS",
            "0",
            "DASHBOARD_PRUNE_CHECK_SECONDS must be a number of seconds above 0",
        ),
        (
            "PRUNE_CHECK_SECONDS",
            "soon",
            "DASHBOARD_PRUNE_CHECK_SECONDS must be a number of seconds above 0",
        ),
    ],
)
def test_bad_retention_settings_are_refused(tmp_path, monkeypatch, setting, value, message):
    monkeypatch.setenv(f"DASHBOARD_{setting}", value)
    with pytest.raises(ConfigError, match=message):
        config_of(tmp_path)


def config_of(tmp_path) -> dict:
    try:
        return create_app({"DATA_DIR": str(tmp_path)}).config
    finally:
        if db.engine is not None:
            db.engine.dispose()
