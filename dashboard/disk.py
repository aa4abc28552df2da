"""Whether the disk under the database can take more callbacks: free space and disk-full errors.

Two signals, because neither is enough alone. Free space (``shutil.disk_usage`` of the
SQLite database's folder, measured at most once a second) is what every process sees, even
before anything fails; but SQLite may fail to grow its write-ahead log while a little space
is still free, and on PostgreSQL the disk is the database server's. So a write that fails
with "database or disk is full" (SQLITE_FULL, or PostgreSQL's SQLSTATE 53100) also marks
the disk full, until a later commit goes through or the free space grows again.
``state()`` is the one answer that /healthz, the pages' banner and the webhook share.
"""

import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext

from .translatable import N_

# Less than this is full: a callback batch, a sign-in or a prune would fail on it anyway.
FULL_BELOW_BYTES = 1024 * 1024
# After a failed write, this much more free space is worth trying again without a commit.
RESUME_MARGIN_BYTES = 1024 * 1024
# Pages and health checks come in bursts; the file system need not be asked for each.
CACHE_SECONDS = 1.0
POSTGRES_DISK_FULL = "53100"
FULL_MESSAGE = N_("The disk is full: storing callbacks is paused until space is freed.")


@dataclass(frozen=True)
class DiskState:
    """The database's disk as this process sees it: free bytes (None if not local), full."""

    free_bytes: int | None
    total_bytes: int | None
    full: bool


class DiskWatch:
    """Measures the database's folder and remembers disk-full errors, for one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: Path | None = None
        self._measured_at = float("-inf")
        self._usage: tuple[int, int] | None = None
        self._failed = False
        self._free_when_failed: int | None = None

    def watch(self, engine: Engine) -> None:
        """Watch the folder of ``engine``'s SQLite file (none on PostgreSQL) and its errors."""
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        with self._lock:
            self._folder = Path(database).parent if database and database != ":memory:" else None
            self._measured_at, self._usage = float("-inf"), None
            self._failed, self._free_when_failed = False, None
        event.listen(engine, "handle_error", self._on_error)
        # Fired as a commit starts: a commit that then fails is marked again by _on_error.
        event.listen(engine, "commit", lambda _connection: self._on_commit())

    def state(self) -> DiskState:
        """Free space (cached for a second) and whether storing is paused for want of it."""
        usage = self._measure(fresh=False)
        free, total = usage if usage else (None, None)
        with self._lock:
            since = self._free_when_failed
            if self._failed and None not in (free, since) and free >= since + RESUME_MARGIN_BYTES:
                self._failed = False
            low = free is not None and free < FULL_BELOW_BYTES
            return DiskState(free, total, self._failed or low)

    def _measure(self, fresh: bool) -> tuple[int, int] | None:
        with self._lock:
            folder = self._folder
            if folder is None:
                return None
            if not fresh and time.monotonic() - self._measured_at < CACHE_SECONDS:
                return self._usage
        try:
            usage = shutil.disk_usage(folder)
            measured = (usage.free, usage.total)
        except OSError:
            measured = None  # the folder is gone: the database errors will say so
        with self._lock:
            self._measured_at, self._usage = time.monotonic(), measured
        return measured

    def _on_error(self, context: ExceptionContext) -> None:
        if not is_disk_full(context.original_exception):
            return
        usage = self._measure(fresh=True)
        with self._lock:
            self._failed = True
            self._free_when_failed = usage[0] if usage else None

    def _on_commit(self) -> None:
        with self._lock:
            self._failed = False


def is_disk_full(error: BaseException) -> bool:
    """Whether a driver's error says that the database's disk is full."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(error)
    return getattr(error, "sqlstate", None) == POSTGRES_DISK_FULL


_watch = DiskWatch()


def init(app: Flask, engine: Engine) -> None:
    """Watch ``engine``'s disk in this process and offer ``disk_state()`` to the templates."""
    _watch.watch(engine)
    app.context_processor(lambda: {"disk_state": state})


def state() -> DiskState:
    """The disk state of this process's database (for /healthz, pages and /metrics)."""
    return _watch.state()
