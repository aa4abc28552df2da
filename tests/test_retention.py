"""Retention: pruning in batches, dry runs, the job lease and the daily schedule."""

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from dashboard import create_app, leases, retention
from dashboard.config import ConfigError
from dashboard.database import Database
from dashboard.extensions import db
from dashboard.messages import queries
from dashboard.models import Delivery, JobLease, Message, PhoneLid, StatusMessageId, utcnow

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


# -- messages and the phone-to-LID map --------------------------------------------------


def message_ids() -> set[str]:
    with db.reading() as session:
        return set(session.scalars(select(Message.message_id)))


def orphans() -> set[str]:
    """The messages none of whose callbacks is stored any more."""
    with db.reading() as session:
        return {
            message.message_id
            for message in session.scalars(select(Message))
            if not queries.callbacks(session, message)
        }


class CheckingDatabase(Database):
    """The real database, noting after each write transaction which messages lost every callback."""

    def __init__(self, url: str):
        super().__init__()
        self.init(url)
        self.orphans_after_writes: list[set[str]] = []

    @contextmanager
    def writing(self):
        """A write transaction, then a look at what it left."""
        with super().writing() as session:
            yield session
        self.orphans_after_writes.append(orphans())


def test_a_message_goes_in_the_batch_that_deletes_its_last_callback(any_db_app):
    old_ids = [row.id for row in store_all([callback(n) for n in range(7)])]
    # M1 and M2 have news since; their old DeliveryCallbacks go, they stay.
    store_all([{**STATUS, "ids": ["M1", "M2"], "momment": 1}])
    store_all([callback(100)])
    age(old_ids, 100)
    checking = CheckingDatabase(any_db_app.config["DATABASE_URL"])
    try:
        result = retention.prune(checking, days=30, batch_size=2)
    finally:
        checking.engine.dispose()
    assert (result.deleted, result.messages, result.finished) == (7, 5, True)
    assert message_ids() == {"M1", "M2", "M100"}
    # No transaction left a message without callbacks behind: each went with its last one.
    assert checking.orphans_after_writes == [set()] * len(checking.orphans_after_writes)
    assert len(checking.orphans_after_writes) == 6  # lease, four batches (2, 2, 2, 1), release


def test_a_status_message_goes_with_the_status_that_named_it(any_db_app):
    seed(old=6, new=1)  # statuses S0 and S3, deliveries of M1, M2, M4, M5
    assert {"S0", "S3", "M1", "M1000"} <= message_ids()
    assert retention.prune(db, days=30).messages == 6
    assert message_ids() == {"M1000"}


def test_messages_left_without_callbacks_earlier_are_pruned_past_a_full_batch(any_db_app):
    # Pruned before messages were: their callbacks are gone, the messages were left behind.
    store_all([callback(n) for n in range(5)])
    with db.writing() as session:
        session.execute(delete(Delivery))
    store_all([callback(9)])
    assert orphans() == {f"M{n}" for n in range(5)}
    assert retention.prune(db, days=30, dry_run=True).messages == 5
    result = retention.prune(db, days=30, batch_size=2)
    assert (result.deleted, result.messages, result.finished) == (0, 5, True)
    assert message_ids() == {"M9"}


def pair(n: int) -> dict:
    """A customer's message giving the number and LID of customer ``n``."""
    return {
        "type": "ReceivedCallback",
        "instanceId": "instance.id",
        "messageId": f"C{n}",
        "phone": f"55449999900{n:02d}",
        "senderLid": f"8189660419{n:04d}@lid",
        "fromMe": False,
    }


def pairs_seen_at() -> list:
    with db.reading() as session:
        return list(session.scalars(select(PhoneLid.seen_at).order_by(PhoneLid.id)))


def test_pairs_not_seen_within_the_period_are_forgotten_past_a_full_batch(any_db_app):
    store_all([pair(n) for n in range(5)])
    with db.writing() as session:
        session.execute(update(PhoneLid).values(seen_at=utcnow() - timedelta(days=31)))
    store_all([pair(7)])  # seen today; customers 0-4 last 31 days ago
    result = retention.prune(db, days=30, batch_size=2)
    assert (result.deleted, result.lid_pairs, result.finished) == (0, 5, True)
    (kept,) = pairs_seen_at()
    assert kept > utcnow() - DAY
    assert retention.prune(db, days=30).lid_pairs == 0


def test_a_dry_run_counts_what_the_prune_then_deletes(any_db_app):
    seed(old=9, new=3)
    store_all([pair(1), pair(2)])
    with db.writing() as session:
        session.execute(
            update(PhoneLid)
            .where(PhoneLid.id == select(func.min(PhoneLid.id)).scalar_subquery())
            .values(seen_at=utcnow() - timedelta(days=100))
        )
    dry = retention.prune(db, days=30, dry_run=True)
    done = retention.prune(db, days=30, batch_size=4)
    counted = (dry.deleted, dry.messages, dry.lid_pairs)
    assert counted == (done.deleted, done.messages, done.lid_pairs) == (9, 9, 1)
