"""BackupError, and the one line an operator reads for a failed read or write."""

import errno
import sqlite3
from pathlib import Path

OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


class BackupError(Exception):
    """A backup or restore that cannot go on, with the one line to show the operator."""


def human_size(size: int) -> str:
    """A byte count the way people read it: ``812 bytes``, ``3.2 MB``."""
    if size < 1000:
        return f"{size} bytes"
    for power, unit in enumerate(("kB", "MB", "GB"), start=1):
        if size < 1000 ** (power + 1):
            return f"{size / 1000**power:.1f} {unit}"
    return f"{size / 1000**4:.1f} TB"


def write_failure(exc: OSError | sqlite3.Error, folder: Path, needed: int) -> str:
    """The line for a write in ``folder`` that failed, with the room it needs."""
    where = f" at {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
    if isinstance(exc, OSError) and exc.errno in NO_PERMISSION:
        return f"Cannot write in {folder} ({reason(exc)}{where}): run as the user owning it."
    # SQLite reports a file-size limit or a failing disk as a mere "disk I/O error": the
    # room needed is worth saying for any failed write.
    lead = "Not enough room in" if _out_of_space(exc) else "Could not write in"
    room = human_size(needed)
    return f"{lead} {folder} ({reason(exc)}{where}): this needs about {room} free there."


def _out_of_space(exc: OSError | sqlite3.Error) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in OUT_OF_SPACE
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def reason(exc: BaseException) -> str:
    """What went wrong, in the words of the system or library that raised ``exc``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
