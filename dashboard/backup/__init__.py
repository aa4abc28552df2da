"""Backups of a SQLite dashboard: one file with the database, the data dir's secrets, a manifest.

The file is a gzip-compressed tar archive (format version 1) of regular files only:

- ``manifest.json``: ``{"format": "zapi-dashboard backup", "format_version": 1,
  "product_version": "1.4.0", "schema_revision": "0004", "created_at":
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

import errno
import gzip
import importlib.metadata
import io
import json
import os
import secrets
import shutil
import sqlite3
import tarfile
import time
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .. import migrate, server_lock
from ..database import SQLITE_BUSY_TIMEOUT_MS, open_engine
from ..logs import database_reason

FORMAT = "zapi-dashboard backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "dashboard.sqlite3"
SECRET_FILES = ("secret_key", "webhook_token", "settings_key")
# Tables counted into the manifest: counting them costs little next to copying them.
COUNTED_TABLES = ("deliveries", "users")
# Pages copied per step of the online backup (4 MiB with SQLite's default page size).
STEP_PAGES = 1024
# Level 6 compresses a database about as well as 9, in a fraction of the time.
COMPRESS_LEVEL = 6
CHUNK = 1024 * 1024
# The files SQLite keeps beside a database while it is open or mid-transaction.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
# What a folder's filesystem answers when it has no hard links (FAT, some network shares).
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}
# How tarfile, gzip and zlib say that an archive is damaged or no archive at all.
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


class BackupError(Exception):
    """A backup or restore that cannot go on, with the one line to show the operator."""


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


@dataclass(frozen=True)
class _Snapshot:
    revision: str | None
    rows: dict[str, int]

    @property
    def callbacks(self) -> int:
        return self.rows.get("deliveries", 0)


def create(database_url: str, data_dir: str | Path, destination: str | Path) -> Created:
    """Write a backup of the database at ``database_url`` and the secrets of ``data_dir``."""
    database = _sqlite_file(database_url, data_dir, "backup")
    destination = Path(destination).absolute()
    _check_destination(destination)
    if not database.is_file():
        raise BackupError(
            f"There is no database at {database} to back up; check DASHBOARD_DATA_DIR."
        )
    found = _read_secrets(Path(data_dir))
    needed = 2 * _size_with_wal(database)  # the copy, then an archive at most as large
    try:
        with _scratch_file(destination, "db") as copy:
            snapshot = _copy_database(database, copy)
            _write_archive(destination, _manifest(snapshot, found), copy, found)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(_write_failure(exc, destination.parent, needed)) from exc
    size = destination.stat().st_size
    return Created(destination, snapshot.callbacks, snapshot.revision, size)


def restore(
    source: str | Path, data_dir: str | Path, database_url: str, replace: bool = False
) -> Restored:
    """Put the backup at ``source`` into ``data_dir``, the server stopped; migrate it forward."""
    data_dir = Path(data_dir)
    database = _sqlite_file(database_url, data_dir, "restore")
    source = Path(source)
    try:
        with server_lock.held(data_dir, server_lock.RESTORE):
            return _restore(source, data_dir, database, replace)
    except server_lock.Held as held:
        raise BackupError(f"{held}; stop it first (e.g. systemctl stop zapi-dashboard).") from None
    except ARCHIVE_ERRORS as exc:
        raise BackupError(
            f"{source} is damaged or is not a zapi-dashboard backup ({_reason(exc)})."
        ) from exc
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(_write_failure(exc, database.parent, _member_size(source))) from exc


def human_size(size: int) -> str:
    """A byte count the way people read it: ``812 bytes``, ``3.2 MB``."""
    if size < 1000:
        return f"{size} bytes"
    for power, unit in enumerate(("kB", "MB", "GB"), start=1):
        if size < 1000 ** (power + 1):
            return f"{size / 1000**power:.1f} {unit}"
    return f"{size / 1000**4:.1f} TB"


def _sqlite_file(database_url: str, data_dir: str | Path, action: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return Path(url.database)
    secret_files = f"the secret files ({', '.join(SECRET_FILES)}) of {data_dir}"
    # pg_dump and pg_restore take a libpq URL: SQLAlchemy's driver suffix is not one.
    meaning = "where <database> is DASHBOARD_DATABASE_URL without +psycopg"
    if action == "backup":
        raise BackupError(
            "This dashboard keeps its data in PostgreSQL: back it up with pg_dump "
            f"(e.g. pg_dump --format=custom --file=dashboard.dump <database>, {meaning}) "
            f"and keep {secret_files} with it."
        )
    raise BackupError(
        "This dashboard keeps its data in PostgreSQL: restore a pg_dump with pg_restore "
        f"(e.g. pg_restore --clean --if-exists --dbname=<database> dashboard.dump, {meaning}) "
        f"and copy back {secret_files}."
    )


# Making a backup


def _check_destination(destination: Path) -> None:
    if destination.exists() or destination.is_symlink():
        raise BackupError(
            f"{destination} already exists; choose another name (a backup never overwrites a file)."
        )
    if not destination.parent.is_dir():
        raise BackupError(
            f"The folder {destination.parent} does not exist; create it or choose another path."
        )


def _copy_database(database: Path, copy: Path) -> _Snapshot:
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


def _begin_snapshot(source: sqlite3.Connection, database: Path) -> _Snapshot:
    # One read transaction across every step of the copy: in WAL mode it holds up no
    # writer, and it fixes the snapshot. Without it each commit of the running server
    # would restart the copy from its first page, for ever under a steady flow of webhooks.
    try:
        source.execute("BEGIN")
        return _Snapshot(_revision(source), _row_counts(source))
    except sqlite3.Error as exc:
        raise BackupError(f"Cannot read the database {database}: {exc}.") from exc


def _read_secrets(data_dir: Path) -> dict[str, bytes]:
    found = {}
    for name in SECRET_FILES:
        try:
            found[name] = (data_dir / name).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BackupError(f"Cannot read {data_dir / name}: {_reason(exc)}.") from exc
    return found


def _manifest(snapshot: _Snapshot, found: dict[str, bytes]) -> dict:
    try:
        version = importlib.metadata.version("zapi-dashboard")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "product_version": version,
        "schema_revision": snapshot.revision,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": DATABASE,
        "secrets": sorted(found),
        "rows": snapshot.rows,
    }


def _write_archive(destination: Path, manifest: dict, copy: Path, found: dict[str, bytes]) -> None:
    with _scratch_file(destination, "partial") as partial:
        with open(partial, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=COMPRESS_LEVEL) as archive:
                _add(archive, MANIFEST, io.BytesIO(json.dumps(manifest, indent=2).encode()))
                with open(copy, "rb") as database:
                    _add(archive, DATABASE, database, copy.stat().st_size)
                for name, content in found.items():
                    _add(archive, name, io.BytesIO(content))
            raw.flush()
            os.fsync(raw.fileno())
        _publish(partial, destination)


def _add(archive: tarfile.TarFile, name: str, content, size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = size if size is not None else len(content.getbuffer())
    info.mode = 0o600
    info.mtime = int(time.time())
    archive.addfile(info, content)


def _publish(partial: Path, destination: Path) -> None:
    # A hard link never replaces a file that appeared meanwhile; where the filesystem has
    # none, a rename after one more look is the next best thing.
    try:
        os.link(partial, destination)
    except FileExistsError:
        _check_destination(destination)
        raise
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:
            raise
        _check_destination(destination)
        os.rename(partial, destination)
    _sync_folder(destination.parent)


# Restoring a backup


def _restore(source: Path, data_dir: Path, database: Path, replace: bool) -> Restored:
    with _open_archive(source) as archive:
        manifest = _read_manifest(archive, source)
        if database.exists() and not replace:
            raise BackupError(
                f"{data_dir} already holds a database ({database.name}); run restore with "
                "--replace to keep it aside and use the backup's."
            )
        _check_room(archive, database.parent)
        with _scratch_file(database, "restore") as copy:
            _extract(archive, DATABASE, copy)
            found_revision = _check_restored(copy, source)
            revision = _migrate(copy, found_revision)
            callbacks = _snapshot_of(copy).callbacks
            found = {data_dir / name: _read_member(archive, name) for name in manifest["secrets"]}
            suffix = _aside_suffix([database, *found])
            kept = _put_in_place(copy, database, data_dir, found, suffix)
    return Restored(data_dir, callbacks, found_revision, revision, kept, suffix)


@contextmanager
def _open_archive(source: Path) -> Iterator[tarfile.TarFile]:
    if not source.exists():
        raise BackupError(f"{source} does not exist.")
    try:
        archive = tarfile.open(source, "r:gz")  # noqa: SIM115 - closed by the with below
    except ARCHIVE_ERRORS as exc:
        raise BackupError(f"{source} is not a zapi-dashboard backup ({_reason(exc)}).") from exc
    except OSError as exc:
        raise BackupError(f"Cannot read {source}: {exc.strerror or exc}.") from exc
    with archive:
        yield archive


def _read_manifest(archive: tarfile.TarFile, source: Path) -> dict:
    not_ours = f"{source} is not a zapi-dashboard backup"
    if MANIFEST not in archive.getnames():
        raise BackupError(f"{not_ours} (it holds no {MANIFEST}).")
    try:
        manifest = json.loads(_read_member(archive, MANIFEST))
    except ValueError:
        raise BackupError(f"{not_ours} (its {MANIFEST} is not JSON).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{not_ours} (its {MANIFEST} is another program's).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BackupError(
            f"{source} was made by a newer zapi-dashboard (backup format {version}); upgrade first."
        )
    named = manifest.get("secrets")
    if not isinstance(named, list) or not set(named) <= set(SECRET_FILES):
        raise BackupError(f"{not_ours} (its {MANIFEST} names unknown files).")
    _member(archive, DATABASE)
    return manifest


def _member(archive: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    try:
        member = archive.getmember(name)
    except KeyError:
        raise BackupError(f"{archive.name} is incomplete: it holds no {name}.") from None
    if not member.isfile():
        raise BackupError(f"{archive.name} is not a zapi-dashboard backup ({name} is no file).")
    return member


def _read_member(archive: tarfile.TarFile, name: str) -> bytes:
    return archive.extractfile(_member(archive, name)).read()


def _check_room(archive: tarfile.TarFile, folder: Path) -> None:
    needed = _member(archive, DATABASE).size
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise BackupError(
            f"Not enough room in {folder}: restoring needs {human_size(needed)} free, "
            f"and {human_size(free)} is."
        )


def _extract(archive: tarfile.TarFile, name: str, target: Path) -> None:
    with archive.extractfile(_member(archive, name)) as packed, open(target, "wb") as unpacked:
        while chunk := packed.read(CHUNK):
            unpacked.write(chunk)
        unpacked.flush()
        os.fsync(unpacked.fileno())


def _check_restored(copy: Path, source: Path) -> str | None:
    with closing(sqlite3.connect(copy, isolation_level=None)) as connection:
        _check_integrity(connection, f"The database in {source}", "nothing was restored")
        revision = _revision(connection)
    # Revisions are not ordered by name: one this code does not know can only come later.
    if revision is not None and revision not in _known_revisions():
        raise BackupError(
            f"this backup was made by a newer zapi-dashboard (schema {revision}); upgrade first."
        )
    return revision


def _migrate(copy: Path, revision: str | None) -> str | None:
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


def _aside_suffix(paths: list[Path]) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix, counter = f".before-restore-{stamp}", 1
    # A second restore within the same second must not overwrite what the first kept.
    while any(Path(f"{path}{suffix}").exists() for path in paths):
        counter += 1
        suffix = f".before-restore-{stamp}-{counter}"
    return suffix


def _put_in_place(
    copy: Path, database: Path, data_dir: Path, found: dict[Path, bytes], suffix: str
) -> tuple[Path, ...]:
    with ExitStack() as stack:
        # Every byte is written before anything moves: from here on only renames, which
        # need no room, so a full disk cannot leave the data dir half restored.
        staged = {path: _staged(stack, path, content) for path, content in found.items()}
        staged[database] = copy
        kept = _set_aside(database, [*found], suffix)
        # A -wal left by a database that is gone would be replayed into the restored one.
        for companion in SQLITE_COMPANIONS:
            Path(f"{database}{companion}").unlink(missing_ok=True)
        for final, temporary in staged.items():
            _match_owner(temporary, data_dir)
            os.replace(temporary, final)
    _sync_folder(database.parent)
    _sync_folder(data_dir)
    return kept


def _staged(stack: ExitStack, path: Path, content: bytes) -> Path:
    temporary = stack.enter_context(_scratch_file(path, "new"))
    with open(temporary, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return temporary


def _set_aside(database: Path, secret_paths: list[Path], suffix: str) -> tuple[Path, ...]:
    # Only a database makes a data dir worth keeping: secrets beside none protect nothing.
    if not database.exists():
        return ()
    kept = [path for path in [database, *secret_paths] if path.exists()]
    for path in kept:
        os.rename(path, f"{path}{suffix}")
    # SQLite finds a database's -wal by its name: moved along, it stays that copy's.
    for companion in SQLITE_COMPANIONS:
        with suppress(FileNotFoundError):
            os.rename(f"{database}{companion}", f"{database}{suffix}{companion}")
    return tuple(kept)


def _match_owner(path: Path, data_dir: Path) -> None:
    # Run as root, restore must still leave files the service's own user can read.
    if os.geteuid() == 0:
        owner = data_dir.stat()
        os.chown(path, owner.st_uid, owner.st_gid)


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


# Shared by both directions


@contextmanager
def _scratch_file(beside: Path, purpose: str) -> Iterator[Path]:
    """A new private (0600) file next to ``beside``, removed at the end unless renamed away."""
    path = beside.with_name(f".{beside.name}.{purpose}-{secrets.token_hex(4)}")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield path
    finally:
        for companion in ("", *SQLITE_COMPANIONS):
            Path(f"{path}{companion}").unlink(missing_ok=True)


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


def _snapshot_of(database: Path) -> _Snapshot:
    with closing(sqlite3.connect(database, isolation_level=None)) as connection:
        return _Snapshot(_revision(connection), _row_counts(connection))


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


def _size_with_wal(database: Path) -> int:
    wal = Path(f"{database}-wal")
    return database.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _member_size(source: Path) -> int:
    with suppress(OSError, KeyError, *ARCHIVE_ERRORS), tarfile.open(source, "r:gz") as archive:
        return archive.getmember(DATABASE).size
    return 0


def _write_failure(exc: OSError | sqlite3.Error, folder: Path, needed: int) -> str:
    where = f" at {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
    if isinstance(exc, OSError) and exc.errno in NO_PERMISSION:
        return f"Cannot write in {folder} ({_reason(exc)}{where}): run as the user owning it."
    # SQLite reports a file-size limit or a failing disk as a mere "disk I/O error": the
    # room needed is worth saying for any failed write.
    lead = "Not enough room in" if _out_of_space(exc) else "Could not write in"
    room = human_size(needed)
    return f"{lead} {folder} ({_reason(exc)}{where}): this needs about {room} free there."


def _out_of_space(exc: OSError | sqlite3.Error) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in OUT_OF_SPACE
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _sync_folder(folder: Path) -> None:
    # The rename itself must reach the disk, or a power cut could undo it.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
