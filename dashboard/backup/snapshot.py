"""The SQLite side: the online copy, integrity checks, revisions, row counts, migrating."""

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from .. import migrate
from ..database import SQLITE_BUSY_TIMEOUT_MS, open_engine
from ..logs import database_reason
from .errors import BackupError

# Tables counted into the manifest: counting them costs little next to copying them.
COUNTED_TABLES = ("deliveries", "users")
# Pages copied per step of the online backup (4 MiB with SQLite's default page size).
STEP_PAGES = 1024


@dataclass(frozen=True)
class Snapshot:
    """A database's schema revision and row counts, as of one read."""

    revision: str | None
    rows: dict[str, int]

    @property
    def callbacks(self) -> int:
        """How many callbacks the database holds."""
        return self.rows.get("deliveries", 0)


def copy_database(database: Path, copy: Path) -> Snapshot:
    """Copy ``database`` into ``copy`` online and check it; return what the copy holds."""
    try:
        source = sqlite3.connect(
            f"{database.as_uri()}?mode=ro",
            uri=True,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        raise BackupError(f"Cannot read the database {database}: {exc}.") from exc
    with closing(source):
        snapshot = _begin_snapshot(source, database)
        with closing(sqlite3.connect(copy, isolation_level=None)) as target:
            source.backup(target, pages=STEP_PAGES, sleep=0)
            # The copy is page for page the database: a fault in it is the database's own.
            _check_integrity(target, f"The database {database}", "no backup was written")
            target.execute("PRAGMA journal_mode=DELETE")  # no -wal file to carry along
    return snapshot


def _begin_snapshot(source: sqlite3.Connection, database: Path) -> Snapshot:
    # One read transaction across every step of the copy: in WAL mode it holds up no
    # writer, and it fixes the snapshot. Without it each commit of the running server
    # would restart the copy from its first page, for ever under a steady flow of webhooks.
    try:
        source.execute("BEGIN")
        return Snapshot(_revision(source), _row_counts(source))
    except sqlite3.Error as exc:
        raise BackupError(f"Cannot read the database {database}: {exc}.") from exc


def check_restored(copy: Path, source: Path) -> str | None:
    """Check the database unpacked from ``source`` and return its schema revision."""
    with closing(sqlite3.connect(copy, isolation_level=None)) as connection:
        _check_integrity(connection, f"The database in {source}", "nothing was restored")
        revision = _revision(connection)
    # Revisions are not ordered by name: one this code does not know can only come later.
    if revision is not None and revision not in _known_revisions():
        raise BackupError(
            f"this backup was made by a newer zapi-dashboard (schema {revision}); upgrade first."
        )
    return revision


def migrate_forward(copy: Path, revision: str | None) -> str | None:
    """Migrate the database ``copy`` from ``revision`` to this version's; return the new one."""
    engine = open_engine(f"sqlite:///{copy}")
    try:
        head = migrate.upgrade(engine)
    except SQLAlchemyError as exc:
        raise BackupError(
            f"Migrating the backup's database from schema {revision} failed: {database_reason(exc)}"
        ) from exc
    finally:
        engine.dispose()
    _settle(copy)
    return head


def _settle(copy: Path) -> None:
    # Back to one self-contained file, so renaming it moves every committed page.
    with closing(sqlite3.connect(copy, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def snapshot_of(database: Path) -> Snapshot:
    """The revision and row counts of the database file ``database``."""
    with closing(sqlite3.connect(database, isolation_level=None)) as connection:
        return Snapshot(_revision(connection), _row_counts(connection))


def size_with_wal(database: Path) -> int:
    """The bytes of ``database`` and of its -wal file, if it has one."""
    wal = Path(f"{database}-wal")
    return database.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _revision(connection: sqlite3.Connection) -> str | None:
    if not _has_table(connection, "alembic_version"):
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def _row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    return {
        table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - our names
        for table in COUNTED_TABLES
        if _has_table(connection, table)
    }


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return connection.execute(query, (name,)).fetchone() is not None


def _check_integrity(connection: sqlite3.Connection, what: str, outcome: str) -> None:
    try:
        problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        raise BackupError(
            f"{what} is damaged (SQLite's integrity check: {problems[0]}); {outcome}."
        )
