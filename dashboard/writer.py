"""Group commit: one writer thread per process stores the callbacks of concurrent requests.

Committing each webhook request on its own makes every request thread queue for the
database's write lock. Instead, requests hand their callback to this process's writer
thread, which folds everything waiting into one transaction and releases each request
only when the transaction holding its callback has committed.
"""

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.orm import Session

from . import deliveries, metrics
from .deliveries import Recorded
from .logs import database_reason
from .payloads import Callback

log = logging.getLogger(__name__)

# Large enough to absorb a burst, small enough to keep each write transaction short.
MAX_BATCH = 256


class StorageUnavailable(Exception):
    """The callback could not be committed; the sender should retry later."""


class _Pending:
    """One callback waiting for its batch; a plain lock is the cheapest way to wake a thread."""

    __slots__ = ("callback", "done", "error", "result")

    def __init__(self, callback: Callback):
        self.callback = callback
        self.result: Recorded | None = None
        self.error: Exception | None = None
        self.done = threading.Lock()
        self.done.acquire()  # released by the writer once the outcome is known

    def finish(self, result: Recorded | None = None, error: Exception | None = None) -> None:
        """Record the outcome and wake the waiting request."""
        self.result, self.error = result, error
        self.done.release()


class BatchWriter:
    """Stores callbacks in batches from a single background thread of this process."""

    def __init__(
        self,
        open_write_session: Callable[[], AbstractContextManager[Session]],
        in_transaction: Callable[[Session], None] = lambda _session: None,
        on_commit: Callable[[], None] = lambda: None,
    ):
        self._open_write_session = open_write_session
        self._in_transaction = in_transaction
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._owner_pid: int | None = None

    def store(self, callback: Callback, timeout: float) -> Recorded:
        """Block until ``callback`` is committed; raise StorageUnavailable if it cannot be."""
        self._ensure_running()
        pending = _Pending(callback)
        self._queue.put(pending)
        if not pending.done.acquire(timeout=timeout):
            raise StorageUnavailable("the database did not commit in time")
        if pending.error is not None:
            raise StorageUnavailable(str(pending.error)) from pending.error
        return pending.result

    def _ensure_running(self) -> None:
        # Threads do not survive fork, so each gunicorn worker starts its own writer.
        if self._owner_pid == os.getpid():
            return
        with self._lock:
            if self._owner_pid != os.getpid():
                self._queue = queue.SimpleQueue()
                threading.Thread(target=self._run, name="callback-writer", daemon=True).start()
                self._owner_pid = os.getpid()

    def _run(self) -> None:
        pending = self._queue
        while True:
            batch = [pending.get()]
            time.sleep(0)  # let request threads already parsing a callback join this batch
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            metrics.observe_batch(len(batch))
            if not self._commit(batch) and len(batch) > 1:
                # One bad callback must not fail the others: retry them one by one.
                for item in batch:
                    self._commit([item])

    def _commit(self, batch: list[_Pending]) -> bool:
        try:
            with self._open_write_session() as session:
                results = deliveries.record(session, [pending.callback for pending in batch])
                self._in_transaction(session)
        except Exception as exc:
            log.error("Could not store %d callback(s): %s", len(batch), database_reason(exc))
            metrics.count_database_error("writer")
            if len(batch) == 1:
                batch[0].finish(error=exc)
            return False
        self._on_commit()
        for pending, result in zip(batch, results, strict=True):
            pending.finish(result)
        return True
