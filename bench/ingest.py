"""Webhook ingest benchmark: the dashboard at serve's defaults against bare Flask at its best.

Starts each server in turn (see bench/launch.py): bare Flask on gunicorn's gthread worker at
each of --bare-layouts (WORKERSxTHREADS), then the dashboard at --workers x --server-threads
with --sockets live sockets open on /ws/deliveries for the whole run. Each is loaded with
wrk POSTing Z-API delivery callbacks, each with a unique messageId/zaapId. It prints
requests/s, p50 and p99 latency and errors for every server, the dashboard's rate ratio to
each bare layout and to the fastest, which the goal uses, whether every 200 the dashboard
gave is a stored row, whether SQLite reported "database is locked", and how many sockets
stayed open and got every stored delivery. The exit code is 0 whatever the figures;
non-zero only when the benchmark itself could not run.

Usage: python bench/ingest.py [--duration 10] [--connections 32] [--threads 2]
                              [--bare-layouts 1x96,2x8] [--sockets 50]
                              [--workers 1] [--server-threads 96] [--warmup 2]
"""

import argparse
import contextlib
import json
import math
import os
import secrets
import shutil
import sqlite3
import string
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import common  # bench/ is on sys.path: the scripts live there
from common import (
    LOCKED_MESSAGE,
    SEED_CALLBACK,
    BenchError,
    FeedClient,
    Server,
    create_admin,
    free_port,
    open_feeds,
    running,
    server_env,
    sign_in,
    wait_for_deliveries,
    wait_until_serving,
)

from dashboard.config import DEFAULTS
from dashboard.server.gunicorn import DEFAULT_THREADS, DEFAULT_WORKERS

BENCH_DIR = Path(__file__).resolve().parent
LAUNCHER = BENCH_DIR / "launch.py"

GOAL_MIN_RATIO = 0.50
GOAL_MAX_P99_MS = 50.0

# Bare Flask's layouts by default: serve's one process with its threads, and one process a
# core with few threads, where the GIL no longer serialises the whole server.
PER_CORE_THREADS = 8
DEFAULT_BARE_LAYOUTS = f"1x{DEFAULT_THREADS},{os.cpu_count() or 1}x{PER_CORE_THREADS}"

# Requests that wrk cut off at its deadline may still be committing when it exits.
SETTLE_DEADLINE_S = 30.0
POLL_INTERVAL_S = 0.1

RESULT_MARKER = "BENCH_RESULT "

# Each wrk thread numbers its requests; the run's random prefix and the thread's number
# make every messageId/zaapId unique (16 + 4 + 12 hex digits, as long as Z-API's ids).
# The figures come out of done() as one JSON line, sturdier to parse than wrk's text.
LUA_TEMPLATE = string.Template(
    r"""
local body_format = [[${body_format}]]
local threads = {}

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1]
  built, ok, not_ok = 0, 0, 0
end

function request()
  built = built + 1
  local unique = string.format("%s%04X%012X", prefix, thread_id, built)
  return wrk.format(nil, nil, nil, string.format(body_format, unique, unique))
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else not_ok = not_ok + 1 end
end

function done(summary, latency, requests)
  local totals = {built = 0, ok = 0, not_ok = 0}
  for _, thread in ipairs(threads) do
    for key, value in pairs(totals) do totals[key] = value + thread:get(key) end
  end
  local e = summary.errors
  io.write(string.format(
    '${marker}{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"built":%d,'
      .. '"ok":%d,"not_ok":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    totals.built, totals.ok, totals.not_ok,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""
)


@dataclass(frozen=True)
class Layout:
    """Gunicorn's process and thread counts for one server."""

    workers: int
    threads: int

    def __str__(self) -> str:
        return f"{self.workers}x{self.threads}"


def parse_layouts(text: str) -> list[Layout]:
    """Read a comma-separated list of WORKERSxTHREADS layouts, such as ``1x96,2x8``."""
    layouts = []
    for item in text.split(","):
        workers, _, threads = item.strip().partition("x")
        if not (workers.isdigit() and threads.isdigit() and int(workers) and int(threads)):
            raise argparse.ArgumentTypeError(f"{item!r} is not WORKERSxTHREADS, such as 2x8")
        layouts.append(Layout(int(workers), int(threads)))
    return layouts


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    built: int
    ok: int
    not_ok: int
    socket_errors: dict[str, int]

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        """Socket errors and timeouts plus every answer other than 200."""
        return sum(self.socket_errors.values()) + self.not_ok


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per server")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="gunicorn workers (serve's default)"
    )
    parser.add_argument(
        "--server-threads",
        type=int,
        default=DEFAULT_THREADS,
        help="threads per worker (serve's default)",
    )
    parser.add_argument(
        "--bare-layouts",
        type=parse_layouts,
        default=DEFAULT_BARE_LAYOUTS,
        help="bare Flask's gunicorn layouts, WORKERSxTHREADS, comma-separated "
        f"(default {DEFAULT_BARE_LAYOUTS})",
    )
    parser.add_argument(
        "--sockets",
        type=int,
        default=50,
        help="live sockets open on the dashboard during its run (0: none)",
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of unmeasured load first (0: none)"
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temp dir (logs, database)"
    )
    args = parser.parse_args()
    if args.threads > args.connections:
        parser.error("--threads cannot exceed --connections (wrk needs a connection each)")
    return args


def write_lua_script(directory: Path) -> Path:
    """Write the wrk script that sends unique callbacks and reports JSON; return its path."""
    placeholder = {**SEED_CALLBACK, "zaapId": "%s", "messageId": "%s"}
    body_format = json.dumps(placeholder, separators=(",", ":"))
    path = directory / "unique_callbacks.lua"
    path.write_text(LUA_TEMPLATE.substitute(body_format=body_format, marker=RESULT_MARKER))
    return path


@contextlib.contextmanager
def running_server(
    app: str, layout: Layout, workdir: Path, env: dict[str, str]
) -> Iterator[Server]:
    """Start ``bench/launch.py app`` at ``layout``, wait until it answers HTTP, always stop it."""
    port = free_port()
    command = [
        sys.executable,
        str(LAUNCHER),
        app,
        f"--port={port}",
        f"--workers={layout.workers}",
        f"--threads={layout.threads}",
    ]
    with running(command, port, workdir / f"{app}-{layout}.log", env) as server:
        # Any answer will do: the bare app has no /healthz, and it only shows a worker is up.
        wait_until_serving(server, "/")
        yield server


def run_wrk(url: str, script: Path, args: argparse.Namespace, seconds: int) -> LoadResult:
    """Load ``url`` for ``seconds`` with wrk and return what its script reported."""
    command = [
        "wrk",
        "--latency",
        f"--threads={args.threads}",
        f"--connections={args.connections}",
        f"--duration={seconds}s",
        f"--script={script}",
        url,
        "--",
        # A fresh prefix per run: warm-up and measured runs never send the same id.
        secrets.token_hex(8).upper(),
    ]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + 60} s") from None
    if completed.returncode != 0:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    return parse_wrk_output(completed.stdout)


def parse_wrk_output(stdout: str) -> LoadResult:
    """Read the JSON line that the Lua done() function printed."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            data = json.loads(line[len(RESULT_MARKER) :])
            break
    else:
        raise BenchError(f"wrk printed no result line:\n{stdout}")
    return LoadResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        built=data["built"],
        ok=data["ok"],
        not_ok=data["not_ok"],
        socket_errors={key: data[key] for key in ("connect", "read", "write", "timeout")},
    )


def webhook_url(server: Server, token: str) -> str:
    """The webhook URL on ``server``."""
    return f"http://127.0.0.1:{server.port}/webhooks/{token}"


def warm_up(url: str, script: Path, args: argparse.Namespace) -> None:
    """Send unmeasured load first, so that every worker has booted and warmed its caches."""
    if args.warmup > 0:
        run_wrk(url, script, args, args.warmup)


def count_deliveries(database: Path) -> int:
    """Count the stored callbacks once the count has stopped changing."""
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    previous = -1
    while True:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            current = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current
        time.sleep(POLL_INTERVAL_S * 5)


def stored_message_ids(database: Path) -> list[str]:
    """The messageId of every stored callback: what each live socket should have received."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return [row[0] for row in db.execute("SELECT message_id FROM deliveries")]


@dataclass(frozen=True)
class FeedFigures:
    """What the dashboard's live sockets received over the run (warm-up included)."""

    asked: int
    refused: int  # 503s from a full worker, retried
    closed: list[str]  # why each socket that closed before the end did
    stored: int  # deliveries stored, each due on every socket
    frames: int  # delivery frames received, duplicates included
    missing: int  # (socket, stored delivery) pairs never received
    short_sockets: int  # sockets that missed at least one
    duplicates: int

    @classmethod
    def of(cls, clients: list[FeedClient], refused: int, message_ids: list[str]) -> "FeedFigures":
        """Count what ``clients`` got of ``message_ids``."""
        lacking = [sum(m not in c.received for m in message_ids) for c in clients]
        return cls(
            asked=len(clients),
            refused=refused,
            closed=[c.error for c in clients if c.error],
            stored=len(message_ids),
            frames=sum(len(c.received) + c.duplicates for c in clients),
            missing=sum(lacking),
            short_sockets=sum(1 for n in lacking if n),
            duplicates=sum(c.duplicates for c in clients),
        )


def rows_match(dashboard: LoadResult, rows: int) -> bool:
    """Whether the rows stored during the run account for every 200, and no more than sent."""
    # wrk stops with requests in flight; the server may commit those without wrk counting
    # their 200, so up to (built - answered) extra rows are expected, and no fewer than ok.
    return dashboard.ok <= rows <= dashboard.ok + max(in_flight(dashboard), 0)


def in_flight(result: LoadResult) -> int:
    """Requests wrk built but saw no answer to before it stopped."""
    return result.built - result.ok - result.not_ok


def ratio(dashboard: LoadResult, bare: LoadResult) -> float:
    """The dashboard's rate over bare Flask's."""
    return dashboard.rate / bare.rate if bare.rate else 0.0


def goal_failures(fastest: LoadResult, dashboard: LoadResult, rows: int, locked: int) -> list[str]:
    """The parts of the goal that this run missed; empty when the goal holds."""
    against = ratio(dashboard, fastest)
    checks = [
        (against >= GOAL_MIN_RATIO, f"rate ratio {against:.2f} < {GOAL_MIN_RATIO:.2f}"),
        (dashboard.p99_ms < GOAL_MAX_P99_MS, f"p99 {dashboard.p99_ms:.1f} ms >= 50 ms"),
        (dashboard.errors == 0, f"{dashboard.errors} errors"),
        (rows_match(dashboard, rows), "stored rows do not match the 200s"),
        (locked == 0, f'{locked} "{LOCKED_MESSAGE}"'),
    ]
    return [message for passed, message in checks if not passed]


def print_feeds(feeds: FeedFigures) -> None:
    """Print what the dashboard's live sockets received."""
    if not feeds.asked:
        print("live sockets: none (--sockets 0)")
        return
    print(
        f"live sockets on the dashboard: {feeds.asked} opened ({feeds.refused} refusals "
        f"retried), {feeds.asked - len(feeds.closed)} still open at the end; bare Flask had "
        "none (it has no socket route)"
    )
    for reason, count in Counter(feeds.closed).items():
        print(f"  {count} closed early: {reason}")
    print(
        f"  delivery frames received: {feeds.frames} for {feeds.stored} stored deliveries x "
        f"{feeds.asked} sockets = {feeds.stored * feeds.asked}; missing {feeds.missing} "
        f"(on {feeds.short_sockets} sockets), duplicates {feeds.duplicates}"
    )


def print_report(
    args: argparse.Namespace,
    bare: list[tuple[Layout, LoadResult]],
    dashboard: LoadResult,
    rows: int,
    locked: int,
    feeds: FeedFigures,
) -> None:
    """Print the comparison table, the storage and socket checks, and the goal verdict."""
    print(
        f"\nwrk: {args.connections} connections, {args.threads} threads, {args.duration} s "
        f"(after {args.warmup} s warm-up); bare Flask on gunicorn's gthread worker, the "
        f"dashboard on serve's worker at {args.workers}x{args.server_threads} with "
        f"{args.sockets} live sockets; access log off for both\n"
    )
    fastest_layout, fastest = max(bare, key=lambda pair: pair[1].rate)
    rows_table = [(f"bare {layout}", result) for layout, result in bare]
    rows_table.append((f"dashboard {args.workers}x{args.server_threads}", dashboard))
    print(f"{'server':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>10}")
    for name, result in rows_table:
        mark = "  fastest bare" if result is fastest else ""
        print(
            f"{name:<18}{result.rate:>10.1f}{result.p50_ms:>10.2f}"
            f"{result.p99_ms:>10.2f}{result.errors:>10}{mark}"
        )
    for name, result in rows_table:
        if result.errors:
            details = ", ".join(f"{k} {v}" for k, v in result.socket_errors.items() if v)
            print(f"  {name} errors: non-200 {result.not_ok}; socket: {details or 'none'}")

    print()
    for layout, result in bare:
        mark = " (fastest: the goal's)" if result is fastest else ""
        print(f"dashboard / bare {layout} rate: {ratio(dashboard, result):.2f}{mark}")
    verdict = "match" if rows_match(dashboard, rows) else "MISMATCH"
    print(
        f"rows stored during the run: {rows}; 200 responses counted: {dashboard.ok}; "
        f"requests cut off by wrk's stop: {in_flight(dashboard)} -> {verdict}"
    )
    print(f'"{LOCKED_MESSAGE}" in the dashboard log: {locked}')
    print_feeds(feeds)

    failures = goal_failures(fastest, dashboard, rows, locked)
    goal = (
        f"ratio to the fastest bare layout ({fastest_layout}) >= {GOAL_MIN_RATIO:.2f}, "
        f"dashboard p99 < {GOAL_MAX_P99_MS:.0f} ms, 0 errors, every 200 a stored row, "
        f'0 "{LOCKED_MESSAGE}"'
    )
    print(f"goal ({goal}): {'MET' if not failures else 'NOT MET: ' + '; '.join(failures)}")


def dashboard_env(args: argparse.Namespace, data_dir: Path, token: str) -> dict[str, str]:
    """serve's environment for the dashboard, with room for --sockets if serve's has none."""
    env = server_env(data_dir, token)
    # serve holds SOCKETS_PER_WORKER sockets a worker; only a larger --sockets needs more.
    share = math.ceil(args.sockets / args.workers)
    if share > DEFAULTS["SOCKETS_PER_WORKER"]:
        env["DASHBOARD_SOCKETS_PER_WORKER"] = str(share)
    return env


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Benchmark bare Flask at each layout, then the dashboard with its sockets; report."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    script = write_lua_script(workdir)
    token = secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(16)
    data_dir = workdir / "data"
    database = data_dir / "dashboard.sqlite3"

    bare = []
    for layout in args.bare_layouts:
        print(f"loading bare Flask at {layout}...", flush=True)
        with running_server("bare", layout, workdir, server_env(None, token)) as server:
            url = webhook_url(server, token)
            warm_up(url, script, args)
            bare.append((layout, run_wrk(url, script, args, args.duration)))

    env = dashboard_env(args, data_dir, token)
    # Before the server starts: the sockets need a signed-in user.
    create_admin(env, password)
    layout = Layout(args.workers, args.server_threads)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_server("dashboard", layout, workdir, env))
        session = sign_in(server.base_url, password)
        stack.callback(session.close)
        print(f"opening {args.sockets} live sockets on the dashboard...", flush=True)
        # after=0 on an empty database: each socket is due every row the run stores.
        clients, refused = stack.enter_context(open_feeds(server, session, args.sockets))
        print("loading the dashboard...", flush=True)
        url = webhook_url(server, token)
        warm_up(url, script, args)
        before = count_deliveries(database)
        dashboard = run_wrk(url, script, args, args.duration)
        rows = count_deliveries(database) - before
        message_ids = stored_message_ids(database)
        wait_for_deliveries([c for c in clients if c.error is None], message_ids)
        feeds = FeedFigures.of(clients, refused, message_ids)
        locked = server.log_text().count(LOCKED_MESSAGE)

    print_report(args, bare, dashboard, rows, locked, feeds)


if __name__ == "__main__":
    sys.exit(common.main("ingest", parse_args, run))
