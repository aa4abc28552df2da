"""Plumbing shared by the benchmarks: servers, live feed clients, paced webhooks, figures."""

import argparse
import base64
import contextlib
import json
import math
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
from wsproto.frame_protocol import FrameProtocol

# gunicorn's graceful_timeout is 20 s; idle workers leave far sooner than that.
STOP_DEADLINE_S = 30.0
# Generous: a cold start on a busy 2-core machine imports Flask, SQLAlchemy and Alembic.
START_DEADLINE_S = 60.0
# The webhook waits up to WRITE_TIMEOUT_SECONDS (30 s) for its commit before a 503.
REQUEST_TIMEOUT_S = 40.0
ADMIN = "bench-admin"
# SQLite's error for a writer that waited too long for the lock; the goals count it in logs.
LOCKED_MESSAGE = "database is locked"
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

SEED_CALLBACK = {
    "phone": "554499999999",
    "zaapId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "messageId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "type": "DeliveryCallback",
    "instanceId": "instance.id",
}


CONNECT_DEADLINE_S = 60.0
# After the last POST has its answer, every socket must have every delivery by then.
DELIVERY_DEADLINE_S = 30.0
POLL_INTERVAL_S = 0.05
# Above this (% of one core) other processes' CPU use during the load is pointed out.
BUSY_MACHINE_PERCENT = 10.0
# Threads that send the paced POSTs: enough that a slow answer never delays the next one.
POST_THREADS = 16

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not run; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(data_dir: Path | None, token: str) -> dict[str, str]:
    """This process's environment with only the benchmark's DASHBOARD_* settings."""
    # An inherited DASHBOARD_DATABASE_URL (say) would point the benchmark at a real database.
    env = {key: value for key, value in os.environ.items() if not key.startswith("DASHBOARD_")}
    env["DASHBOARD_WEBHOOK_TOKEN"] = token
    if data_dir is not None:
        env["DASHBOARD_DATA_DIR"] = str(data_dir)
    return env


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after a deadline."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_DEADLINE_S)
    # The workers share the master's process group: this also ends any orphaned worker.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass(frozen=True)
class Server:
    """A running ``zapi-dashboard serve`` and where its output goes."""

    process: subprocess.Popen
    port: int
    token: str
    log_path: Path

    @property
    def base_url(self) -> str:
        """The server's address, e.g. ``http://127.0.0.1:8000``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The webhook URL, token included."""
        return f"{self.base_url}/webhooks/{self.token}"

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


def cli_path() -> str:
    """The ``zapi-dashboard`` console script of this virtualenv."""
    beside = Path(sys.executable).with_name("zapi-dashboard")
    found = str(beside) if beside.exists() else shutil.which("zapi-dashboard")
    if found is None:
        raise BenchError("zapi-dashboard is not installed (pip install -e . in the repository)")
    return found


def create_admin(env: dict[str, str], password: str, username: str = ADMIN) -> None:
    """Add the benchmark's admin with ``zapi-dashboard create-user --password-stdin``."""
    command = [cli_path(), "create-user", username, "--role", "admin", "--password-stdin"]
    try:
        result = subprocess.run(
            command,
            input=password + "\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=START_DEADLINE_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError("create-user did not finish in time") from None
    if result.returncode != 0:
        raise BenchError(f"create-user failed: {result.stderr.strip() or result.stdout.strip()}")


@contextlib.contextmanager
def running(command: list[str], port: int, log_path: Path, env: dict) -> Iterator[Server]:
    """Run a server ``command`` that listens on ``port``; always stop it at the end."""
    # A file, not a pipe: a pipe nobody drains would block the server once it fills up.
    # A session of its own keeps Ctrl-C away from gunicorn, so shutdown stays ours to do,
    # and makes the master and its workers one process group to signal.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield Server(process, port, env["DASHBOARD_WEBHOOK_TOKEN"], log_path)
    finally:
        stop_server(process)


def running_server(workers: int, threads: int, workdir: Path, env: dict):
    """Run ``zapi-dashboard serve`` on a free port of 127.0.0.1 (a context manager)."""
    port = free_port()
    command = [
        cli_path(),
        "serve",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        f"--threads={threads}",
    ]
    return running(command, port, workdir / "server.log", env)


def wait_until_serving(server: Server, path: str = "/healthz") -> None:
    """Poll ``path`` until a worker answers it; fail if the server exits or never does."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"the server exited with code {server.process.returncode}:\n{server.log_text()}"
            )
        # The master accepts connections as soon as it binds; an HTTP answer shows that a
        # worker has loaded the app, which is what the measurements need.
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{server.base_url}{path}", timeout=5)
            return
        time.sleep(0.05)
    raise BenchError(f"the server did not answer within {START_DEADLINE_S:.0f} s")


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...; see proc(5))."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``: gunicorn's workers, for its master."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def proc_number(path: str, key: str) -> int | None:
    """The ``key:  N [kB]`` value of a /proc status-like file, or None when absent."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def error_lines(log_text: str) -> int:
    """How many lines of a server log report an error or start a traceback."""
    return sum(1 for line in log_text.splitlines() if "[ERROR]" in line or "Traceback" in line)


def sign_in(base_url: str, password: str, username: str = ADMIN) -> requests.Session:
    """Sign the admin in through the real form (GET /login, csrf_token, POST)."""
    session = requests.Session()
    page = session.get(f"{base_url}/login", timeout=REQUEST_TIMEOUT_S)
    found = CSRF_FIELD.search(page.text)
    if page.status_code != 200 or found is None:
        raise BenchError(f"GET /login gave {page.status_code} and no CSRF token")
    answer = session.post(
        f"{base_url}/login",
        data={"username": username, "password": password, "csrf_token": found.group(1)},
        allow_redirects=False,
        timeout=REQUEST_TIMEOUT_S,
    )
    if answer.status_code not in (302, 303):
        raise BenchError(f"signing in failed: POST /login gave {answer.status_code}")
    return session


# --- the machine's CPU ----------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time used so far by ``pids`` (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        fields = stat_fields(pid)
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / CLOCK_TICKS


@dataclass(frozen=True)
class CpuShares:
    """Who used the machine's CPUs over a window, each in % of one core."""

    server: float
    benchmark: float
    others: float  # every other process on the machine, and the kernel
    steal: float  # time the hypervisor gave to other machines

    def report(self, servers: str = "server") -> str:
        """The shares as the reports print them, with a warning when others were busy."""
        text = (
            f"CPU during the load, % of one core ({os.cpu_count()} on this machine): {servers} "
            f"{self.server:.0f}, this benchmark {self.benchmark:.0f}, other processes "
            f"{self.others:.0f}, steal {self.steal:.0f}"
        )
        if self.others + self.steal > BUSY_MACHINE_PERCENT:
            text += (
                "\n  the machine was busy with other work during the load: the latencies above\n"
                "  include waiting for a CPU; run again on a quiet machine to compare."
            )
        return text


class CpuWatch:
    """Splits the machine's CPU time over a window between the server, us and the rest."""

    def __init__(self, server_pids: list[int]) -> None:
        self._pids = server_pids
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, float, float]:
        # /proc/stat's first line: user nice system idle iowait irq softirq steal (ticks).
        ticks = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
        busy = sum(ticks[0:3]) + sum(ticks[5:7])
        return (
            time.monotonic(),
            busy / CLOCK_TICKS,
            ticks[7] / CLOCK_TICKS,
            cpu_seconds(self._pids),
            cpu_seconds([os.getpid()]),
        )

    def shares(self) -> CpuShares:
        """The shares since this watch was made."""
        end = self._sample()
        elapsed, busy, steal, server, benchmark = (
            b - a for a, b in zip(self._start, end, strict=True)
        )

        def percent(seconds: float) -> float:
            return 100.0 * seconds / elapsed

        return CpuShares(
            server=percent(server),
            benchmark=percent(benchmark),
            others=percent(max(0.0, busy - server - benchmark)),
            steal=percent(steal),
        )


# --- the live feed clients ------------------------------------------------------------


class FeedClient:
    """One socket on /ws/deliveries, its deliveries timed by the shared FeedReader thread.

    The server's frames are split here, not by a WebSocket library: with hundreds of
    sockets read by one thread, a full parser would make the client the bottleneck and
    time its own backlog instead of the server.
    """

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.received: dict[str, float] = {}  # messageId -> time.perf_counter() at receipt
        self.duplicates = 0
        self.other_events: Counter[str] = Counter()
        self.caught_up = threading.Event()
        self.error: str | None = None
        self._buffer = bytearray(buffered)
        self._pong = FrameProtocol(client=True, extensions=[])

    def take(self, data: bytes, now: float) -> bool:
        """Handle bytes from the server; False once the socket is closed."""
        self._buffer += data
        buffer = self._buffer
        while len(buffer) >= 2:
            opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(buffer[2:4]), 4
            elif length == 127:
                length, start = int.from_bytes(buffer[2:10]), 10
            if len(buffer) < start + length:
                break
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == TEXT_OPCODE:  # the server sends every message as one frame
                self._note(payload, now)
            elif opcode == PING_OPCODE:
                self.sock.sendall(self._pong.pong(payload))
            elif opcode == CLOSE_OPCODE:
                code = int.from_bytes(payload[:2]) if len(payload) >= 2 else None
                self.error = f"closed by the server ({code})"
                return False
        return True

    def _note(self, frame: bytes, now: float) -> None:
        event = _EVENT.match(frame)
        name = event[1].decode() if event else None
        if name == "delivery":
            message_id = _MESSAGE_ID.search(frame)[1].decode()
            if message_id in self.received:
                self.duplicates += 1
            else:
                self.received[message_id] = now
        elif name == "caught-up":
            self.caught_up.set()
        else:
            self.other_events[str(name)] += 1


TEXT_OPCODE, CLOSE_OPCODE, PING_OPCODE = 0x1, 0x8, 0x9
_EVENT = re.compile(rb'\{"event": "([a-z-]+)"')
_MESSAGE_ID = re.compile(rb'"messageId": "([^"]*)"')


class FeedReader:
    """One thread that reads every feed client's socket, as a browser's event loop would."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._selector.register(self._wake_in, selectors.EVENT_READ)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="feed-reader", daemon=True)
        self._thread.start()

    def add(self, client: FeedClient) -> None:
        """Read ``client``'s socket from now on; what it already holds first."""
        if not client.take(b"", time.perf_counter()):
            return
        self._selector.register(client.sock, selectors.EVENT_READ, client)

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                client = key.data
                if client is None:
                    continue
                try:
                    data = client.sock.recv(262144)
                    if data and client.take(data, time.perf_counter()):
                        continue
                except OSError as exc:
                    client.error = f"{type(exc).__name__}: {exc}"
                client.error = client.error or "closed by the server"
                self._selector.unregister(client.sock)

    def stop(self, clients: list[FeedClient]) -> None:
        """End the thread and close every client's socket."""
        self._stopping = True
        self._wake_out.send(b"\0")
        self._thread.join(timeout=5)
        for client in clients:
            client.sock.close()
        self._wake_in.close()
        self._wake_out.close()


def connect_feed(server: Server, cookie: str, after: int) -> FeedClient | None:
    """Open one signed-in socket, as a browser's handshake does; None when it is a 503."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/deliveries?after={after} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\nOrigin: {server.base_url}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(65536)
        if not data:
            raise BenchError("the server closed a socket during its handshake")
        answer += data
    head, _, rest = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status == 101:
        sock.settimeout(None)
        return FeedClient(sock, rest)
    sock.close()
    if status == 503:
        return None
    raise BenchError(f"a socket was refused with {status}")


@contextlib.contextmanager
def open_feeds(
    server: Server, session: requests.Session, count: int, after: int = 0
) -> Iterator[tuple[list[FeedClient], int]]:
    """Open ``count`` signed-in sockets, wait until each is caught up; yield them and 503s."""
    cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
    # after=<the newest id> (0 on an empty database): the server subscribes the socket,
    # then sends a caught-up event, which tells us the socket will get every later row.
    clients: list[FeedClient] = []
    reader = FeedReader()
    refused = 0
    deadline = time.monotonic() + CONNECT_DEADLINE_S
    try:
        while len(clients) < count:
            try:
                client = connect_feed(server, cookie, after)
            except OSError as exc:
                raise BenchError(f"socket {len(clients) + 1} could not connect: {exc}") from None
            if client is None:
                # A worker with SOCKETS_PER_WORKER sockets answers 503; the page retries,
                # and so do we: the next connection may reach another worker.
                if time.monotonic() > deadline:
                    raise BenchError(f"socket {len(clients) + 1} was refused: 503")
                refused += 1
                time.sleep(POLL_INTERVAL_S)
                continue
            reader.add(client)
            clients.append(client)
        for client in clients:
            if not client.caught_up.wait(max(0.0, deadline - time.monotonic())):
                raise BenchError(f"a socket never caught up ({client.error or 'no event'})")
        yield clients, refused
    finally:
        reader.stop(clients)


# --- the webhook load -----------------------------------------------------------------


@dataclass(kw_only=True)
class Exchange:
    """One HTTP request of a paced load: when it was due, sent and answered (perf_counter)."""

    due: float = 0.0
    sent: float = 0.0
    answered: float = 0.0
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the server answered 200 (for a webhook: the callback is committed)."""
        return self.status == 200

    @property
    def latency_ms(self) -> float:
        """Answer minus due time: the open-loop latency, which counts any wait to be sent."""
        return (self.answered - self.due) * 1000

    def run(self, request: Callable[[], requests.Response]) -> None:
        """Make the request, noting when it was sent and answered, and how it ended."""
        self.sent = time.perf_counter()
        try:
            self.status = request().status_code
        except requests.RequestException as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        self.answered = time.perf_counter()


@dataclass
class Post(Exchange):
    """One webhook POST of a delivery callback."""

    message_id: str
    body: str


class ThreadSessions:
    """A keep-alive ``requests.Session`` for each thread that asks (one is not thread-safe)."""

    def __init__(self, cookies: requests.cookies.RequestsCookieJar | None = None) -> None:
        self._cookies = cookies
        self._local = threading.local()
        self._sessions: list[requests.Session] = []

    def session(self) -> requests.Session:
        """This thread's session, made on first use with the cookies given (a sign-in)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            if self._cookies is not None:
                session.cookies.update(self._cookies)
            self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every thread's connection."""
        for session in self._sessions:
            session.close()


class Poster:
    """Sends POSTs to the webhook, one keep-alive connection per sending thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sessions = ThreadSessions()

    def send(self, post: Post) -> None:
        """POST ``post.body`` and note the times and the outcome on ``post``."""
        session = self._sessions.session()
        post.run(
            lambda: session.post(
                self.url,
                data=post.body,
                headers={"Content-Type": "application/json"},
                timeout=REQUEST_TIMEOUT_S,
            )
        )

    def close(self) -> None:
        """Close every thread's connection."""
        self._sessions.close()


def make_posts(prefix: str, count: int) -> list[Post]:
    """``count`` delivery callbacks, each with a unique messageId/zaapId."""
    posts = []
    for index in range(count):
        message_id = f"{prefix}{index:06d}"
        body = json.dumps({**SEED_CALLBACK, "messageId": message_id, "zaapId": message_id})
        posts.append(Post(message_id, body))
    return posts


ExchangeT = TypeVar("ExchangeT", bound=Exchange)


def paced(
    send: Callable[[ExchangeT], None],
    exchanges: list[ExchangeT],
    rate: float,
    threads: int = POST_THREADS,
) -> None:
    """Send ``exchanges`` open loop at ``rate`` per second: i is due at t0 + i/rate."""
    # Each goes to a pool thread, so that a slow answer never delays the next one's send;
    # should every thread be busy, the wait shows in latency_ms, which runs from the due time.
    with ThreadPoolExecutor(threads, thread_name_prefix="paced") as pool:
        start = time.perf_counter() + 0.01
        futures = []
        for index, exchange in enumerate(exchanges):
            exchange.due = start + index / rate
            delay = exchange.due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, exchange))
        for future in futures:
            future.result()


def paced_posts(poster: Poster, posts: list[Post], rate: float) -> None:
    """Send ``posts`` at ``rate`` per second: post i at t0 + i/rate, each from a pool thread."""
    paced(poster.send, posts, rate)


def wait_for_deliveries(clients: list[FeedClient], message_ids: list[str]) -> bool:
    """Wait until every client has every id, or the deadline passes; return whether it did."""
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while time.monotonic() < deadline:
        if all(all(m in client.received for m in message_ids) for client in clients):
            return True
        time.sleep(POLL_INTERVAL_S)
    return False


# --- figures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """p50, p95, p99 and max of a set of durations, in ms, and how many there were."""

    p50: float
    p95: float
    p99: float
    max: float
    count: int

    @classmethod
    def of(cls, values_ms: list[float]) -> "Spread":
        """Nearest-rank percentiles of ``values_ms``."""
        if not values_ms:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        ordered = sorted(values_ms)

        def rank(p: float) -> float:
            return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

        return cls(rank(50), rank(95), rank(99), ordered[-1], len(ordered))


def _exit_on_sigterm(signum, frame) -> None:
    # SystemExit, so that the cleanup in ``finally`` blocks still runs.
    sys.exit(128 + signum)


def main(name: str, parse_args: Callable[[], argparse.Namespace], run: Callable[..., None]) -> int:
    """Run ``run(args, workdir)`` in a temp dir that is always removed; return the exit code."""
    args = parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix=f"zapi-{name}-bench-"))
    try:
        run(args, workdir)
        return 0
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_temp:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
