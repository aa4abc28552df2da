"""The database handle: one engine, sessions for reading and writing, SQLite pragmas."""

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from .config import ConfigError

# A writer waits this long for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 15_000


class Database:
    """Owns the engine; hands out sessions whose transactions the caller scopes."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._reader: sessionmaker[Session] | None = None
        self._writer: sessionmaker[Session] | None = None
        self._file: Path | None = None
        self._write_lock: WriteLock | None = None

    def init(self, url: str, sqlite_synchronous: str = "NORMAL") -> None:
        """Create the engine for ``url``; SQLite connections get their pragmas here."""
        if self.engine is not None:
            self.engine.dispose()
        self.engine = open_engine(url, sqlite_synchronous)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        # Writes announce themselves so SQLite takes the write lock up front (see below).
        self._writer = sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
        )
        database_file = self.engine.url.database if self.is_sqlite else None
        has_file = database_file and database_file != ":memory:"
        self._file = Path(database_file) if has_file else None
        self._write_lock = WriteLock(Path(f"{database_file}.write-lock")) if has_file else None

    @property
    def is_sqlite(self) -> bool:
        """Whether the engine talks to SQLite."""
        return self.engine is not None and self.engine.dialect.name == "sqlite"

    @property
    def file_is_missing(self) -> bool:
        """Whether the database is a SQLite file that does not exist yet."""
        return self._file is not None and not self._file.exists()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads; its transaction is rolled back at the end."""
        with self._reader() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session whose transaction commits if the block succeeds, else rolls back."""
        lock = self._write_lock.held() if self._write_lock else nullcontext()
        with lock, self._writer.begin() as session:
            yield session


class WriteLock:
    """Queues the writers of one SQLite file, across threads and processes, in the kernel.

    SQLite's own busy handler makes a waiting writer sleep and retry, up to 100 ms a try,
    so under load a request can wait long after the lock is free. A blocking ``flock`` wakes
    the next writer the moment the lock is released.
    """

    def __init__(self, path: Path):
        self._path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._fd_pid: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the duration of the block."""
        with self._thread_lock:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self) -> int:
        # A descriptor inherited through fork shares its lock with the parent, so each
        # process opens its own.
        if self._fd_pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            self._fd_pid = os.getpid()
        return self._fd


def open_engine(url: str, sqlite_synchronous: str = "NORMAL") -> Engine:
    """Create an engine; on SQLite, install the one connect hook that sets every pragma."""
    try:
        parsed = make_url(url)
        engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"DASHBOARD_DATABASE_URL cannot be used: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _install_sqlite_hooks(engine, sqlite_synchronous)
    return engine


def _install_sqlite_hooks(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection, _record):
        # Leave transaction control to SQLAlchemy's "begin" event below; pysqlite's own
        # implicit BEGIN would always be DEFERRED.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection):
        # A deferred transaction that reads and then writes cannot wait for the lock: SQLite
        # fails it at once with "database is locked". Writers therefore take the lock first.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def upsert_insert(dialect_name: str, table: Table):
    """An INSERT into ``table`` that can take ON CONFLICT, on either supported database."""
    # Both dialects spell the upsert clauses the same, on their own Insert classes.
    return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect_name](table)
