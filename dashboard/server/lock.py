"""One process at a time owns a data dir: ``serve`` for its lifetime, ``restore`` while it runs.

The lock is the kernel's (``flock`` on ``<data dir>/server.lock``), so it ends with the
process that held it, however that process ended: a file left behind never blocks a start.
The file names its holder (pid and role) for the message that says who has the lock.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "server.lock"
SERVER = "server"
RESTORE = "restore"


class Held(Exception):
    """The data dir's lock belongs to another process; ``pid`` (None if unknown) and ``role``."""

    def __init__(self, pid: int | None, role: str):
        self.pid = pid
        self.role = role
        who = "a zapi-dashboard restore" if role == RESTORE else "another zapi-dashboard server"
        verb = "is running on this data dir"
        super().__init__(f"{who} {verb} (pid {pid if pid is not None else 'unknown'})")


def hold_while_running(data_dir: str | Path, role: str = SERVER) -> None:
    """Take the data dir's lock for the rest of this process's life, or raise Held."""
    # The descriptor is deliberately never closed: forked gunicorn workers inherit it, so
    # the lock lasts as long as any process of this server is alive.
    _acquire(Path(data_dir), role)


@contextmanager
def held(data_dir: str | Path, role: str) -> Iterator[None]:
    """Hold the data dir's lock for the duration of the block, or raise Held."""
    descriptor = _acquire(Path(data_dir), role)
    try:
        yield
    finally:
        os.close(descriptor)


def _acquire(data_dir: Path, role: str) -> int:
    descriptor = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    if os.geteuid() == 0:
        # Made by root (say, a restore run with sudo), the file must stay the service's.
        owner = data_dir.stat()
        os.fchown(descriptor, owner.st_uid, owner.st_gid)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 100, 0).decode(errors="replace").split()
        os.close(descriptor)
        raise Held(*_parse_holder(holder)) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()} {role}\n".encode(), 0)
    return descriptor


def _parse_holder(words: list[str]) -> tuple[int | None, str]:
    # The holder writes its pid just after taking the lock: a reader may find it empty.
    pid = int(words[0]) if words and words[0].isdigit() else None
    role = words[1] if len(words) > 1 else SERVER
    return pid, role
