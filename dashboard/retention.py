"""Retention: delete callbacks older than the configured number of days, the messages
left without callbacks, the phone-to-LID pairs no callback has carried since, and the
refused webhook requests older than that (their bodies may hold people's numbers).

Rows go in small batches, each its own write transaction, so the write lock is held for a
fraction of a second at a time and webhook writes slip in between. A job lease makes one
process at a time prune, and the daily run happen once a day across every instance.
"""

import logging
import os
import secrets
import socket
import threading
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.exc import SQLAlchemyError

from . import deliveries, leases, lids, rejections
from .database import Database
from .logs import database_reason
from .messages import store
from .models import utcnow

log = logging.getLogger(__name__)

LEASE_NAME = "prune"
# Small enough that one batch holds SQLite's write lock for a few milliseconds.
BATCH_SIZE = 500
# Renewed with every batch; a holder that died frees the job after this long.
LEASE_DURATION = timedelta(minutes=5)
RUN_EVERY = timedelta(days=1)
# A breath between batches, so a waiting webhook write takes the lock before the next one.
PAUSE_SECONDS = 0.01
# How long a stopping worker waits for the batch in flight and the lease release.
STOP_TIMEOUT_SECONDS = 5.0


class Pruned(NamedTuple):
    """What a prune did: its cutoff, and how many callbacks, messages, phone-to-LID pairs and
    refused requests it deleted (or would, dry).

    ``finished`` is False when it stopped early: asked to stop, or its lease was lost.
    """

    cutoff: datetime | None
    deleted: int
    finished: bool
    messages: int = 0
    lid_pairs: int = 0
    rejected: int = 0


def holder_name() -> str:
    """A name for this process's lease, unique per call: host, pid, random suffix."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


def prune(
    database: Database,
    days: int,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    holder: str | None = None,
    run_every: timedelta | None = None,
    stop: threading.Event | None = None,
) -> Pruned | None:
    """Delete callbacks received more than ``days`` ago, the messages they leave without
    callbacks, the phone-to-LID pairs unseen since and the refused requests received
    before then; None if another process has the job.

    ``days`` 0 keeps everything. With ``run_every``, nothing happens unless the last
    finished prune is at least that old. A dry run only counts, and takes no lease.
    """
    if days <= 0:
        return Pruned(None, 0, True)
    now = utcnow()
    cutoff = now - timedelta(days=days)
    if dry_run:
        with database.reading() as session:
            return Pruned(
                cutoff,
                deliveries.count_older_than(session, cutoff),
                True,
                messages=store.count_prunable(session, cutoff),
                lid_pairs=lids.count_unseen_since(session, cutoff),
                rejected=rejections.count_older_than(session, cutoff),
            )
    holder = holder or holder_name()
    stop = stop or threading.Event()
    with database.writing() as session:
        finished_before = now - run_every if run_every else None
        if not leases.acquire(session, LEASE_NAME, holder, now, LEASE_DURATION, finished_before):
            return None
    callbacks = messages = lid_pairs = rejected = 0
    finished = False
    try:
        while not stop.is_set():
            with database.writing() as session:
                # Renewed in the batch's own transaction: a batch never runs without the lease.
                if not leases.renew(session, LEASE_NAME, holder, utcnow(), LEASE_DURATION):
                    log.warning("Pruning stopped: the lease expired and another process took it.")
                    break
                batch_callbacks = deliveries.prune_batch(session, cutoff, batch_size)
                # After the callbacks: this batch's deletions leave some messages without any.
                batch_messages = store.prune_batch(session, batch_size)
                batch_pairs = lids.prune_batch(session, cutoff, batch_size)
                batch_rejected = rejections.prune_batch(session, cutoff, batch_size)
            callbacks += batch_callbacks
            messages += batch_messages
            lid_pairs += batch_pairs
            rejected += batch_rejected
            # Done when every kind ran short; a full batch of any kind may have more behind it.
            if max(batch_callbacks, batch_messages, batch_pairs, batch_rejected) < batch_size:
                finished = True
                break
            stop.wait(PAUSE_SECONDS)
    finally:
        with database.writing() as session:
            leases.release(session, LEASE_NAME, holder, utcnow() if finished else None)
    return Pruned(
        cutoff, callbacks, finished, messages=messages, lid_pairs=lid_pairs, rejected=rejected
    )


class Pruner:
    """This process's background thread: wakes up now and then, prunes when the day's run is due.

    Every process runs one; the lease makes exactly one of them prune each day.
    """

    def __init__(
        self, database: Database, days: int, check_seconds: float, logger: logging.Logger = log
    ) -> None:
        self._database = database
        self._days = days
        self._check_seconds = check_seconds
        self._log = logger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread, unless retention is off."""
        if self._days > 0:
            self._thread = threading.Thread(target=self._run, name="pruner", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop after the batch in flight; the lease is released for another process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_SECONDS)

    def check(self) -> Pruned | None:
        """Prune if the day's run is due and no other process has it; never raise."""
        try:
            result = prune(self._database, self._days, run_every=RUN_EVERY, stop=self._stop)
        except SQLAlchemyError as exc:
            self._log.warning("Pruning failed, will retry later: %s", database_reason(exc))
            return None
        except Exception:  # a worker must outlive any failure of its pruner
            self._log.exception("Pruning failed, will retry later.")
            return None
        if result is not None:
            self._log.info(
                "Pruned %d callback(s) received before %s (pid %d), %d message(s) left without"
                " callbacks, %d phone-to-LID pair(s) not seen since and %d refused webhook"
                " request(s) received before then%s.",
                result.deleted,
                result.cutoff.isoformat(timespec="seconds"),
                os.getpid(),
                result.messages,
                result.lid_pairs,
                result.rejected,
                "" if result.finished else "; stopped early, the rest goes next time",
            )
        return result

    def _run(self) -> None:
        # Jitter spreads the checks of workers and instances started together.
        jitter = secrets.SystemRandom()
        while not self._stop.wait(self._check_seconds * jitter.uniform(0.5, 1.0)):
            self.check()
