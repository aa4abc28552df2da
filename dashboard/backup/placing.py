"""Putting files in place: scratch files, free room, publishing, setting aside, renaming."""

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from .errors import BackupError, human_size

# The files SQLite keeps beside a database while it is open or mid-transaction.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
# What a folder's filesystem answers when it has no hard links (FAT, some network shares).
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


@contextmanager
def scratch_file(beside: Path, purpose: str) -> Iterator[Path]:
    """A new private (0600) file next to ``beside``, removed at the end unless renamed away."""
    path = beside.with_name(f".{beside.name}.{purpose}-{secrets.token_hex(4)}")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield path
    finally:
        for companion in ("", *SQLITE_COMPANIONS):
            Path(f"{path}{companion}").unlink(missing_ok=True)


def check_destination(destination: Path) -> None:
    """Refuse a backup path that exists already or whose folder does not."""
    if destination.exists() or destination.is_symlink():
        raise BackupError(
            f"{destination} already exists; choose another name (a backup never overwrites a file)."
        )
    if not destination.parent.is_dir():
        raise BackupError(
            f"The folder {destination.parent} does not exist; create it or choose another path."
        )


def publish(partial: Path, destination: Path) -> None:
    """Give the finished ``partial`` its name ``destination``, never over another file."""
    # A hard link never replaces a file that appeared meanwhile; where the filesystem has
    # none, a rename after one more look is the next best thing.
    try:
        os.link(partial, destination)
    except FileExistsError:
        check_destination(destination)
        raise
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:
            raise
        check_destination(destination)
        os.rename(partial, destination)
    sync_folder(destination.parent)


def check_room(folder: Path, needed: int) -> None:
    """Refuse to go on unless ``folder`` has ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise BackupError(
            f"Not enough room in {folder}: restoring needs {human_size(needed)} free, "
            f"and {human_size(free)} is."
        )


def aside_suffix(paths: list[Path]) -> str:
    """A ``.before-restore-<time>`` suffix that none of ``paths`` has been kept under yet."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix, counter = f".before-restore-{stamp}", 1
    # A second restore within the same second must not overwrite what the first kept.
    while any(Path(f"{path}{suffix}").exists() for path in paths):
        counter += 1
        suffix = f".before-restore-{stamp}-{counter}"
    return suffix


def put_in_place(
    copy: Path, database: Path, data_dir: Path, found: dict[Path, bytes], suffix: str
) -> tuple[Path, ...]:
    """Replace the database by ``copy`` and write the secrets ``found``; return what was kept."""
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
    sync_folder(database.parent)
    sync_folder(data_dir)
    return kept


def _staged(stack: ExitStack, path: Path, content: bytes) -> Path:
    temporary = stack.enter_context(scratch_file(path, "new"))
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


def sync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable."""
    # The rename itself must reach the disk, or a power cut could undo it.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
