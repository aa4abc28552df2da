"""Backups of a SQLite dashboard: one file with the database, the data dir's secrets, a manifest.

The file is a gzip-compressed tar archive (format version 1) of regular files only:

- ``manifest.json``: ``{"format": "zapi-dashboard backup", "format_version": 1,
  "product_version": "1.4.0", "schema_revision": "0006", "created_at":
  "2026-05-13T10:15:02Z", "database": "dashboard.sqlite3", "secrets": ["secret_key", ...],
  "rows": {"deliveries": 12345, "users": 3}}``;
- ``dashboard.sqlite3``: a consistent copy of the database, made with SQLite's online
  backup API while the server runs, integrity-checked, in rollback-journal mode so the one
  file holds everything;
- ``secret_key``, ``webhook_token``, ``settings_key``: those the data dir holds.

``tar -tzvf`` lists it. ``restore`` reads only these names, never extracts anything else,
checks the database before it replaces anything, and migrates an older schema forward.
On PostgreSQL both refuse and point to ``pg_dump`` / ``pg_restore``.
"""

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..server import lock as server_lock
from .archive import (
    ARCHIVE_ERRORS,
    DATABASE,
    extract,
    make_manifest,
    member,
    member_size,
    open_archive,
    read_manifest,
    read_member,
    write_archive,
)
from .errors import BackupError, human_size, reason, write_failure
from .location import read_secrets, sqlite_file
from .placing import aside_suffix, check_destination, check_room, put_in_place, scratch_file
from .snapshot import check_restored, copy_database, migrate_forward, size_with_wal, snapshot_of

__all__ = ["BackupError", "Created", "Restored", "create", "human_size", "restore"]


@dataclass(frozen=True)
class Created:
    """A backup written by ``create``."""

    path: Path
    callbacks: int
    revision: str | None
    size: int


@dataclass(frozen=True)
class Restored:
    """A backup put in place by ``restore``."""

    data_dir: Path
    callbacks: int
    backup_revision: str | None
    revision: str | None
    # Files moved aside, each renamed to <its name><kept_suffix>, in the folder it was in.
    kept_aside: tuple[Path, ...]
    kept_suffix: str


def create(database_url: str, data_dir: str | Path, destination: str | Path) -> Created:
    """Write a backup of the database at ``database_url`` and the secrets of ``data_dir``."""
    database = sqlite_file(database_url, data_dir, "backup")
    destination = Path(destination).absolute()
    check_destination(destination)
    if not database.is_file():
        raise BackupError(
            f"There is no database at {database} to back up; check DASHBOARD_DATA_DIR."
        )
    found = read_secrets(Path(data_dir))
    needed = 2 * size_with_wal(database)  # the copy, then an archive at most as large
    try:
        with scratch_file(destination, "db") as copy:
            snapshot = copy_database(database, copy)
            write_archive(destination, make_manifest(snapshot, found), copy, found)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(write_failure(exc, destination.parent, needed)) from exc
    size = destination.stat().st_size
    return Created(destination, snapshot.callbacks, snapshot.revision, size)


def restore(
    source: str | Path, data_dir: str | Path, database_url: str, replace: bool = False
) -> Restored:
    """Put the backup at ``source`` into ``data_dir``, the server stopped; migrate it forward."""
    data_dir = Path(data_dir)
    database = sqlite_file(database_url, data_dir, "restore")
    source = Path(source)
    try:
        with server_lock.held(data_dir, server_lock.RESTORE):
            return _restore(source, data_dir, database, replace)
    except server_lock.Held as held:
        raise BackupError(f"{held}; stop it first (e.g. systemctl stop zapi-dashboard).") from None
    except ARCHIVE_ERRORS as exc:
        raise BackupError(
            f"{source} is damaged or is not a zapi-dashboard backup ({reason(exc)})."
        ) from exc
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(write_failure(exc, database.parent, member_size(source))) from exc


def _restore(source: Path, data_dir: Path, database: Path, replace: bool) -> Restored:
    with open_archive(source) as archive:
        manifest = read_manifest(archive, source)
        if database.exists() and not replace:
            raise BackupError(
                f"{data_dir} already holds a database ({database.name}); run restore with "
                "--replace to keep it aside and use the backup's."
            )
        check_room(database.parent, member(archive, DATABASE).size)
        with scratch_file(database, "restore") as copy:
            extract(archive, DATABASE, copy)
            found_revision = check_restored(copy, source)
            revision = migrate_forward(copy, found_revision)
            callbacks = snapshot_of(copy).callbacks
            found = {data_dir / name: read_member(archive, name) for name in manifest["secrets"]}
            suffix = aside_suffix([database, *found])
            kept = put_in_place(copy, database, data_dir, found, suffix)
    return Restored(data_dir, callbacks, found_revision, revision, kept, suffix)
