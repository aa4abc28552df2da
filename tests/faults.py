"""Faults under load, shared by tests/test_faults.py and bench/faults.py (which runs them longer).

Each client thread posts callbacks of its own (a distinct messageId each) and resends the
same body until it gets a 200, as Z-API does; meanwhile a server is killed, its disk fills
up or a PostgreSQL cluster of the test's own restarts. Afterwards every callback that got
a 200 must be stored exactly once.
"""

import contextlib
import errno
import glob
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from .support import SEED, Server, free_port, wait_until

# The webhook waits up to 30 s (WRITE_TIMEOUT_SECONDS) for its commit before a 503.
REQUEST_TIMEOUT = 40
# Between two tries of one callback: Z-API waits far longer, but a test has no time to lose.
RETRY_PAUSE = 0.2
# A client still retrying its last callback this long after the stop is reported as stuck.
FINISH_DEADLINE = 120
# Messages are checked in English; Portuguese is the default.
ENGLISH = {"Accept-Language": "en"}
# Each kill comes after this many new 200s, then at a random moment within a second.
ACKS_BEFORE_KILL = 20
KILL_WINDOW_SECONDS = 1.0


@dataclass
class Load:
    """Client threads that post distinct callbacks and retry each one until it gets a 200."""

    urls: list[str]
    clients: int
    prefix: str = "fault"
    acked: dict[str, int] = field(default_factory=dict)
    answers: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True)
            for n in range(self.clients)
        ]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.finish()

    def finish(self) -> None:
        """Let each client get its last callback stored (or give up at the deadline); wait."""
        self._stop.set()
        for thread in self._threads:
            thread.join(FINISH_DEADLINE + REQUEST_TIMEOUT)

    def acked_count(self) -> int:
        """How many callbacks got their 200 so far."""
        with self._lock:
            return len(self.acked)

    def wait_for_acks(self, more: int, deadline: float = 60, message: str = "") -> None:
        """Wait until ``more`` callbacks beyond those acknowledged now got their 200."""
        target = self.acked_count() + more
        wait_until(lambda: self.acked_count() >= target, deadline, message or f"{more} more 200s")

    def _client(self, number: int) -> None:
        browser = requests.Session()
        browser.headers.update(ENGLISH)
        target = number % len(self.urls)
        sequence = 0
        while not self._stop.is_set():
            message_id = f"{self.prefix}-{number}-{sequence}"
            target = self._deliver(browser, message_id, target)
            sequence += 1

    def _deliver(self, browser: requests.Session, message_id: str, target: int) -> int:
        """Post one callback until it gets a 200; returns the server to use next."""
        body = {**SEED, "messageId": message_id, "zaapId": message_id}
        give_up = None
        while True:
            try:
                answer = browser.post(self.urls[target], json=body, timeout=REQUEST_TIMEOUT)
            except requests.RequestException as exc:
                self._count(type(exc).__name__)
            else:
                self._count(answer.status_code)
                if answer.status_code == 200:
                    with self._lock:
                        self.acked[message_id] = answer.json()["id"]
                    return target
                self._refused(answer)
            # The way a load balancer would: the next try goes to the next instance.
            target = (target + 1) % len(self.urls)
            if self._stop.is_set():
                give_up = give_up or time.monotonic() + FINISH_DEADLINE
                if time.monotonic() > give_up:
                    with self._lock:
                        self.stuck.append(message_id)
                    return target
            time.sleep(RETRY_PAUSE)

    def _count(self, answer: object) -> None:
        with self._lock:
            self.answers[answer] += 1

    def _refused(self, answer: requests.Response) -> None:
        try:
            reason = answer.json()["error"]
        except (ValueError, KeyError, TypeError):
            reason = answer.text[:200]
        with self._lock:
            if answer.status_code == 503:
                self.refusals[reason] += 1
            else:
                self.unexpected.append(f"{answer.status_code}: {reason}")


def sqlite_url(data_dir: Path) -> str:
    """The URL of the SQLite database that a server on ``data_dir`` keeps."""
    return f"sqlite:///{data_dir / 'dashboard.sqlite3'}"


def rows_per_message(database_url: str) -> dict[str, list[int]]:
    """The row ids stored for each messageId."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT message_id, id FROM deliveries")).all()
    finally:
        engine.dispose()
    stored: dict[str, list[int]] = {}
    for message_id, row_id in rows:
        stored.setdefault(message_id, []).append(row_id)
    return stored


def storage_faults(load: Load, database_url: str) -> list[str]:
    """What is wrong with the store: an acknowledged callback missing, or anything twice."""
    stored = rows_per_message(database_url)
    problems = [f"{mid} is stored {len(ids)} times" for mid, ids in stored.items() if len(ids) > 1]
    for message_id, row_id in load.acked.items():
        found = stored.get(message_id)
        if found != [row_id]:
            problems.append(f"{message_id} got 200 as row {row_id}; stored as rows {found}")
    return problems


def integrity(data_dir: Path) -> str:
    """SQLite's own verdict on the database file of ``data_dir`` ("ok" when intact)."""
    connection = sqlite3.connect(data_dir / "dashboard.sqlite3")
    try:
        return "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
    finally:
        connection.close()


def kill_repeatedly(
    victim: Server, restart: Callable[[str], Server], load: Load, kills: int, rng: random.Random
) -> Server:
    """SIGKILL ``victim`` (master and workers) ``kills`` times under load, restarting it each time.

    Returns the server that runs at the end.
    """
    for round_number in range(1, kills + 1):
        load.wait_for_acks(ACKS_BEFORE_KILL, message=f"200s before kill {round_number}")
        # Not a wait for something: this picks the random moment of the kill.
        time.sleep(rng.uniform(0, KILL_WINDOW_SECONDS))
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait(timeout=30)
        victim = restart(f"restart-{round_number}")
    load.wait_for_acks(ACKS_BEFORE_KILL, message="200s after the last restart")
    return victim


class MountRefused(Exception):
    """This machine does not let the tests mount a file system (not root, or no tmpfs)."""


@contextlib.contextmanager
def small_filesystem(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (say "64m") mounted at ``mount_point``; MountRefused if not allowed."""
    mount_point.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise MountRefused(f"cannot mount a tmpfs: {result.stderr.strip() or result.returncode}")
    try:
        yield mount_point
    finally:
        # Busy while this process still holds a file there (a write-lock descriptor, say).
        unmounted = subprocess.run(["umount", str(mount_point)], capture_output=True, check=False)
        if unmounted.returncode:
            subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def fill(path: Path) -> int:
    """Write zeros to ``path`` until its file system is full; returns the bytes written."""
    written = 0
    block = bytes(1024 * 1024)
    with path.open("wb", buffering=0) as filler:
        while True:
            try:
                written += filler.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # What is left is less than a block: the smallest writes still fit, so take them too.
    with path.open("ab", buffering=0) as filler, contextlib.suppress(OSError):
        while filler.write(bytes(4096)):
            written += 4096
    return written


def health(server: Server) -> tuple[int, dict]:
    """The status and JSON body of the server's /healthz."""
    answer = requests.get(f"{server.base_url}/healthz", headers=ENGLISH, timeout=REQUEST_TIMEOUT)
    return answer.status_code, answer.json()


def banner_shown(browser: requests.Session, server: Server, words: str) -> bool:
    """Whether the signed-in feed page has an alert that contains ``words``."""
    page = browser.get(f"{server.base_url}/", timeout=REQUEST_TIMEOUT)
    assert page.status_code == 200, page.status_code
    return any(
        words in chunk.split("</div>", 1)[0] for chunk in page.text.split('role="alert"')[1:]
    )


class PostgresRefused(Exception):
    """This machine cannot run a PostgreSQL cluster of the test's own (no binaries, no user)."""


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of one test's own, so stopping it disturbs no other test or run."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database, over TCP on loopback."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def ready(self) -> bool:
        """Whether the cluster accepts connections."""
        probe = [_postgres_binary("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(probe, check=False).returncode == 0

    def control(self, action: str) -> None:
        """``pg_ctl`` ``action`` (start, stop), waiting until it is done."""
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory}"
        command = [_postgres_binary("pg_ctl"), action, "-w", "-t", "120", "-D"]
        command += [str(self.directory / "cluster"), "-m", "fast", "-o", options]
        if action == "start":
            command += ["-l", str(self.directory / "server.log")]
        subprocess.run(_as_cluster_owner(command), check=True, capture_output=True, timeout=180)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop the cluster for the block; it always runs again afterwards."""
        self.control("stop")
        try:
            yield
        finally:
            if not self.ready():
                self.control("start")
            wait_until(self.ready, 120, "PostgreSQL to accept connections again")


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A new cluster (``initdb``, trust auth) on a free port, removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="zapi-dashboard-pg-"))
    try:
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                shutil.chown(directory, "postgres", "postgres")
            except LookupError as exc:
                raise PostgresRefused("no postgres user to run a private cluster as") from exc
        initdb = [_postgres_binary("initdb"), "-D", str(directory / "cluster")]
        initdb += ["-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run(_as_cluster_owner(initdb), check=True, capture_output=True, timeout=180)
        cluster = PrivatePostgres(directory, free_port())
        cluster.control("start")
        try:
            yield cluster
        finally:
            with contextlib.suppress(subprocess.SubprocessError):
                cluster.control("stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _postgres_binary(name: str) -> str:
    # Debian keeps the server's programs out of PATH, one folder per major version.
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if found[-1] is None:
        raise PostgresRefused(f"PostgreSQL's {name} is not installed")
    return found[-1]


def _as_cluster_owner(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command
