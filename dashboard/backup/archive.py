"""The backup file's format: its manifest, writing its members, reading and checking them."""

import gzip
import importlib.metadata
import io
import json
import os
import tarfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from .errors import BackupError, reason
from .placing import publish, scratch_file
from .snapshot import Snapshot

FORMAT = "zapi-dashboard backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "dashboard.sqlite3"
SECRET_FILES = ("secret_key", "webhook_token", "settings_key")
# Level 6 compresses a database about as well as 9, in a fraction of the time.
COMPRESS_LEVEL = 6
CHUNK = 1024 * 1024
# How tarfile, gzip and zlib say that an archive is damaged or no archive at all.
ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def make_manifest(snapshot: Snapshot, found: dict[str, bytes]) -> dict:
    """The manifest of a backup of ``snapshot`` with the secret files ``found``."""
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


def write_archive(destination: Path, manifest: dict, copy: Path, found: dict[str, bytes]) -> None:
    """Write the backup file ``destination``: the manifest, the database ``copy``, the secrets."""
    with scratch_file(destination, "partial") as partial:
        with open(partial, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=COMPRESS_LEVEL) as archive:
                _add(archive, MANIFEST, io.BytesIO(json.dumps(manifest, indent=2).encode()))
                with open(copy, "rb") as database:
                    _add(archive, DATABASE, database, copy.stat().st_size)
                for name, content in found.items():
                    _add(archive, name, io.BytesIO(content))
            raw.flush()
            os.fsync(raw.fileno())
        publish(partial, destination)


def _add(archive: tarfile.TarFile, name: str, content, size: int | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.size = size if size is not None else len(content.getbuffer())
    info.mode = 0o600
    info.mtime = int(time.time())
    archive.addfile(info, content)


@contextmanager
def open_archive(source: Path) -> Iterator[tarfile.TarFile]:
    """The backup file ``source``, open for reading."""
    if not source.exists():
        raise BackupError(f"{source} does not exist.")
    try:
        archive = tarfile.open(source, "r:gz")  # noqa: SIM115 - closed by the with below
    except ARCHIVE_ERRORS as exc:
        raise BackupError(f"{source} is not a zapi-dashboard backup ({reason(exc)}).") from exc
    except OSError as exc:
        raise BackupError(f"Cannot read {source}: {exc.strerror or exc}.") from exc
    with archive:
        yield archive


def read_manifest(archive: tarfile.TarFile, source: Path) -> dict:
    """The manifest of ``archive``, checked to be one this version can restore."""
    not_ours = f"{source} is not a zapi-dashboard backup"
    if MANIFEST not in archive.getnames():
        raise BackupError(f"{not_ours} (it holds no {MANIFEST}).")
    try:
        manifest = json.loads(read_member(archive, MANIFEST))
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
    member(archive, DATABASE)
    return manifest


def member(archive: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """The regular file ``name`` of ``archive``; refused if it is missing or anything else."""
    try:
        member = archive.getmember(name)
    except KeyError:
        raise BackupError(f"{archive.name} is incomplete: it holds no {name}.") from None
    if not member.isfile():
        raise BackupError(f"{archive.name} is not a zapi-dashboard backup ({name} is no file).")
    return member


def read_member(archive: tarfile.TarFile, name: str) -> bytes:
    """The content of the member ``name`` of ``archive``."""
    return archive.extractfile(member(archive, name)).read()


def extract(archive: tarfile.TarFile, name: str, target: Path) -> None:
    """Unpack the member ``name`` of ``archive`` into the file ``target``, synced to disk."""
    with archive.extractfile(member(archive, name)) as packed, open(target, "wb") as unpacked:
        while chunk := packed.read(CHUNK):
            unpacked.write(chunk)
        unpacked.flush()
        os.fsync(unpacked.fileno())


def member_size(source: Path) -> int:
    """The unpacked size of the database in the backup file ``source``; 0 if it cannot tell."""
    with suppress(OSError, KeyError, *ARCHIVE_ERRORS), tarfile.open(source, "r:gz") as archive:
        return archive.getmember(DATABASE).size
    return 0
