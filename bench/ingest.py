"""Webhook ingest benchmark: the dashboard against a bare Flask app on the same gunicorn setup.

Starts each server in turn (see bench/launch.py), loads it with wrk POSTing Z-API delivery
callbacks, each with a unique messageId/zaapId, and prints requests/s, p50 and p99 latency
and errors for both, the dashboard/bare rate ratio, and whether the goal holds. It then
checks that every 200 the dashboard gave is a stored row and that SQLite never reported
"database is locked". The exit code is 0 whatever the figures; non-zero only when the
benchmark itself could not run.

Usage: python bench/ingest.py [--duration 10] [--connections 32] [--threads 2]
                              [--workers 2] [--server-threads 64] [--warmup 2]
"""

import argparse
import contextlib
import json
import secrets
import shutil
import sqlite3
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import common  # bench/ is on sys.path: the scripts live there
from common import (
    LOCKED_MESSAGE,
    SEED_CALLBACK,
    BenchError,
    Server,
    free_port,
    running,
    server_env,
    wait_until_serving,
)

from dashboard.server.gunicorn import DEFAULT_THREADS, DEFAULT_WORKERS

BENCH_DIR = Path(__file__).resolve().parent
LAUNCHER = BENCH_DIR / "launch.py"

GOAL_MIN_RATIO = 0.50
GOAL_MAX_P99_MS = 50.0

# Generous: a cold start on a busy 2-core machine imports Flask, SQLAlchemy and Alembic.
START_DEADLINE_S = 60.0
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
    app: str, args: argparse.Namespace, workdir: Path, env: dict[str, str]
) -> Iterator[Server]:
    """Start ``bench/launch.py app``, wait until it answers HTTP, and always stop it."""
    port = free_port()
    command = [
        sys.executable,
        str(LAUNCHER),
        app,
        f"--port={port}",
        f"--workers={args.workers}",
        f"--threads={args.server_threads}",
    ]
    with running(command, port, workdir / f"{app}.log", env) as server:
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


def goal_failures(bare: LoadResult, dashboard: LoadResult, locked: int) -> list[str]:
    """The parts of the goal that this run missed; empty when the goal holds."""
    ratio = dashboard.rate / bare.rate if bare.rate else 0.0
    checks = [
        (ratio >= GOAL_MIN_RATIO, f"rate ratio {ratio:.2f} < {GOAL_MIN_RATIO:.2f}"),
        (dashboard.p99_ms < GOAL_MAX_P99_MS, f"p99 {dashboard.p99_ms:.1f} ms >= 50 ms"),
        (dashboard.errors == 0, f"{dashboard.errors} errors"),
        (locked == 0, f'{locked} "{LOCKED_MESSAGE}"'),
    ]
    return [message for passed, message in checks if not passed]


def print_report(
    args: argparse.Namespace, bare: LoadResult, dashboard: LoadResult, rows: int, locked: int
) -> None:
    """Print the comparison table, the storage checks and the goal verdict."""
    print(
        f"\nwrk: {args.connections} connections, {args.threads} threads, {args.duration} s "
        f"(after {args.warmup} s warm-up); gunicorn gthread: {args.workers} workers x "
        f"{args.server_threads} threads, access log off for both\n"
    )
    print(f"{'server':<12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>10}")
    for name, result in (("bare flask", bare), ("dashboard", dashboard)):
        print(
            f"{name:<12}{result.rate:>10.1f}{result.p50_ms:>10.2f}"
            f"{result.p99_ms:>10.2f}{result.errors:>10}"
        )
    for name, result in (("bare flask", bare), ("dashboard", dashboard)):
        if result.errors:
            details = ", ".join(f"{k} {v}" for k, v in result.socket_errors.items() if v)
            print(f"  {name} errors: non-200 {result.not_ok}; socket: {details or 'none'}")

    ratio = dashboard.rate / bare.rate if bare.rate else 0.0
    print(f"\ndashboard/bare rate: {ratio:.2f}")
    # wrk stops with requests in flight; the server may commit those without wrk counting
    # their 200, so up to (built - answered) extra rows are expected, and no fewer than ok.
    in_flight = dashboard.built - dashboard.ok - dashboard.not_ok
    verdict = "match" if dashboard.ok <= rows <= dashboard.ok + max(in_flight, 0) else "MISMATCH"
    print(
        f"rows stored during the run: {rows}; 200 responses counted: {dashboard.ok}; "
        f"requests cut off by wrk's stop: {in_flight} -> {verdict}"
    )
    print(f'"{LOCKED_MESSAGE}" in the dashboard log: {locked}')

    failures = goal_failures(bare, dashboard, locked)
    goal = (
        f"ratio >= {GOAL_MIN_RATIO:.2f}, dashboard p99 < {GOAL_MAX_P99_MS:.0f} ms, "
        f'0 errors, 0 "{LOCKED_MESSAGE}"'
    )
    print(f"goal ({goal}): {'MET' if not failures else 'NOT MET: ' + '; '.join(failures)}")


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Benchmark the bare app, then the dashboard, one at a time, and print the report."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    script = write_lua_script(workdir)
    token = secrets.token_urlsafe(32)
    data_dir = workdir / "data"
    database = data_dir / "dashboard.sqlite3"

    print("loading the bare Flask app...", flush=True)
    with running_server("bare", args, workdir, server_env(None, token)) as server:
        url = webhook_url(server, token)
        warm_up(url, script, args)
        bare = run_wrk(url, script, args, args.duration)

    print("loading the dashboard...", flush=True)
    with running_server("dashboard", args, workdir, server_env(data_dir, token)) as server:
        url = webhook_url(server, token)
        warm_up(url, script, args)
        before = count_deliveries(database)
        dashboard = run_wrk(url, script, args, args.duration)
        rows = count_deliveries(database) - before
        locked = server.log_text().count(LOCKED_MESSAGE)

    print_report(args, bare, dashboard, rows, locked)


if __name__ == "__main__":
    sys.exit(common.main("ingest", parse_args, run))
