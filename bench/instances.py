"""Cross-instance live feed benchmark: how fast a row stored by one instance reaches another's.

Creates a fresh database on the PostgreSQL of 127.0.0.1:5432, starts two ``zapi-dashboard
serve`` instances (A and B: gunicorn with serve's defaults, separate data dirs, the same
database and webhook token) on free ports of 127.0.0.1, signs in to each and opens N
websocket clients on each one's ``/ws/deliveries``. Webhooks are POSTed to A only, at a
steady pace; every socket notes when each delivery arrived. A's sockets are woken by A's
own writer (the same-instance baseline of the run); B's learn of A's commits through
PostgreSQL's LISTEN/NOTIFY. Latency is receipt on a socket minus the start of the POST.
The exit code is 0 whatever the figures; non-zero only when the benchmark could not run.

Usage: python bench/instances.py [--clients 20] [--rate 20] [--duration 20] [--runs 3]
                                 [--workers 1] [--threads 96] [--warmup 1]
"""

import argparse
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import common  # bench/ is on sys.path: the scripts live there
from common import (
    CONNECT_DEADLINE_S,
    POLL_INTERVAL_S,
    BenchError,
    CpuShares,
    CpuWatch,
    FeedClient,
    Post,
    Poster,
    Server,
    Spread,
    children_of,
    create_admin,
    error_lines,
    make_posts,
    open_feeds,
    paced_posts,
    running_server,
    server_env,
    sign_in,
    wait_for_deliveries,
    wait_until_serving,
)

from dashboard.notifications import CHANNEL
from dashboard.server.gunicorn import DEFAULT_THREADS, DEFAULT_WORKERS

try:
    import psycopg
except ImportError:  # reported as a benchmark failure, with the fix
    psycopg = None

GOAL_P99_MS = 100.0
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
# CREATE and DROP DATABASE run from here, outside any transaction.
MAINTENANCE_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=test"
# How many sockets with missing deliveries the report lists by name.
LISTED_MISSES = 5


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="live sockets on each instance")
    parser.add_argument("--rate", type=float, default=20.0, help="webhook POSTs per second to A")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of POSTs per run")
    parser.add_argument("--runs", type=int, default=3, help="measured runs")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="gunicorn workers (serve's default)"
    )
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="threads per worker (serve's default)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of unmeasured POSTs first (0: none)"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
    for name in ("clients", "rate", "duration", "runs", "workers", "threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


# --- the database and the two instances ----------------------------------------------------


def maintenance(statement: str) -> None:
    """Run ``statement`` (CREATE or DROP DATABASE) in autocommit on the ``test`` database."""
    with psycopg.connect(MAINTENANCE_CONNINFO, autocommit=True) as connection:
        connection.execute(statement)


@contextlib.contextmanager
def fresh_database(purpose: str = "instances") -> Iterator[str]:
    """Create ``bench_<purpose>_<pid>``, yield its URL, and always drop it at the end."""
    if psycopg is None:
        raise BenchError("psycopg is not installed (pip install -e '.[postgres]')")
    name = f"bench_{purpose}_{os.getpid()}"
    try:
        maintenance(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise BenchError(f"cannot create database {name} on 127.0.0.1:5432: {exc}") from None
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        # FORCE: a connection a killed worker left behind must not keep the database alive.
        try:
            maintenance(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            print(f"could not drop database {name}: {exc}", file=sys.stderr)


def listeners(database_url: str) -> int:
    """How many connections to the run's database have LISTENed on the live feed's channel."""
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        # The listener's connection sends nothing after its LISTEN, so that stays its query.
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query = %s",
            (f"LISTEN {CHANNEL}",),
        ).fetchone()
    return row[0]


def wait_for_listeners(database_url: str, count: int) -> int:
    """Wait until ``count`` processes listen for commits (or a deadline); return how many do."""
    deadline = time.monotonic() + CONNECT_DEADLINE_S
    while (found := listeners(database_url)) < count and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    return found


def start_instance(
    stack: contextlib.ExitStack, args: argparse.Namespace, workdir: Path, env: dict
) -> Server:
    """Run one ``zapi-dashboard serve`` for the whole benchmark and wait until it answers."""
    workdir.mkdir(exist_ok=True)  # create-user has made A's data dir in it
    server = stack.enter_context(running_server(args.workers, args.threads, workdir, env))
    wait_until_serving(server)
    return server


def server_pids(servers: list[Server]) -> list[int]:
    """The gunicorn masters and their workers."""
    pids = []
    for server in servers:
        pids += [server.process.pid, *children_of(server.process.pid)]
    return pids


def log_problems(server: Server) -> tuple[int, int]:
    """Error lines in the server's log, and warnings that notifications were lost."""
    text = server.log_text()
    return error_lines(text), text.count("lost its PostgreSQL notifications")


# --- one run's figures ---------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """What the sockets of one instance saw of one run's messages."""

    latency: Spread  # per (socket, message): receipt - POST start, ms
    missing: dict[int, int]  # socket index -> messages it never got
    duplicates: int


@dataclass(frozen=True)
class RunReport:
    """One run: both sides, the per-message extra delay of B, the POSTs and the CPU."""

    same: Side
    cross: Side
    cross_extra: Spread  # per message: first B socket - first A socket, ms
    post_round_trip: Spread
    pace_lag: Spread
    sent: int
    failed: list[str]
    cpu: CpuShares
    samples: tuple[list[float], list[float]]  # A's and B's latencies, for the pooled figures


def side_figures(
    posts: list[Post], clients: list[FeedClient], duplicates_before: int
) -> tuple[Side, list[float], dict[str, float]]:
    """One side's latencies and misses; also the first receipt of each message on it."""
    latencies, missing, first = [], {}, {}
    for index, client in enumerate(clients, start=1):
        for post in posts:
            received = client.received.get(post.message_id)
            if received is None:
                missing[index] = missing.get(index, 0) + 1
                continue
            latencies.append((received - post.sent) * 1000)
            first[post.message_id] = min(first.get(post.message_id, received), received)
    duplicates = sum(client.duplicates for client in clients) - duplicates_before
    return Side(Spread.of(latencies), missing, duplicates), latencies, first


def measure_run(
    poster: Poster,
    posts: list[Post],
    rate: float,
    feeds: tuple[list[FeedClient], list[FeedClient]],
    pids: list[int],
) -> RunReport:
    """Send one run's POSTs to A, wait for every socket to get them, and work out the figures."""
    same_clients, cross_clients = feeds
    duplicates_before = [sum(c.duplicates for c in clients) for clients in feeds]
    watch = CpuWatch(pids)
    paced_posts(poster, posts, rate)
    ok = [post for post in posts if post.ok]
    wait_for_deliveries([*same_clients, *cross_clients], [post.message_id for post in ok])
    cpu = watch.shares()
    same, same_ms, same_first = side_figures(ok, same_clients, duplicates_before[0])
    cross, cross_ms, cross_first = side_figures(ok, cross_clients, duplicates_before[1])
    extra = [
        (cross_first[message_id] - same_first[message_id]) * 1000
        for message_id in cross_first.keys() & same_first.keys()
    ]
    return RunReport(
        same=same,
        cross=cross,
        cross_extra=Spread.of(extra),
        post_round_trip=Spread.of([(post.answered - post.sent) * 1000 for post in ok]),
        pace_lag=Spread.of([(post.sent - post.due) * 1000 for post in posts]),
        sent=len(posts),
        failed=[post.error or f"HTTP {post.status}" for post in posts if not post.ok],
        cpu=cpu,
        samples=(same_ms, cross_ms),
    )


# --- the report ------------------------------------------------------------------------------


def spread_row(label: str, spread: Spread, extra: str = "") -> str:
    """One latency row: p50, p95, p99, max (ms) and the sample count."""
    return (
        f"  {label:<40}{spread.p50:>8.1f}{spread.p95:>8.1f}{spread.p99:>8.1f}{spread.max:>8.1f}"
        f"{spread.count:>9}{extra}"
    )


def table_header() -> str:
    """The column titles of the latency rows."""
    return f"  {'ms':<40}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'samples':>9}"


def misses_text(side: Side) -> str:
    """How many deliveries a side missed or got twice, naming the first sockets that missed."""
    text = f"missing {sum(side.missing.values())}, duplicates {side.duplicates}"
    if side.missing:
        listed = sorted(side.missing.items())[:LISTED_MISSES]
        text += " (" + ", ".join(f"socket {index}: {count}" for index, count in listed)
        text += ", ..." if len(side.missing) > LISTED_MISSES else ""
        text += ")"
    return text


def print_run(number: int, report: RunReport, clients: int) -> None:
    """Print one run's table, its delivery check and its CPU shares."""
    ok = report.sent - len(report.failed)
    print(f"\nrun {number}: {report.sent} POSTs to A, {ok} answered 200", end="")
    print(f", {len(report.failed)} failed: {report.failed[0]}" if report.failed else "")
    print(table_header())
    print(spread_row("A's sockets (same instance, baseline)", report.same.latency))
    print(spread_row("B's sockets (cross-instance)", report.cross.latency))
    print(spread_row("per message: B's first - A's first", report.cross_extra))
    print(spread_row("the POST's own round trip", report.post_round_trip))
    print(spread_row("POST start - its due time (pacing lag)", report.pace_lag))
    print(f"  deliveries: {ok} messages x {clients} sockets on each instance")
    print(f"    A: {misses_text(report.same)}")
    print(f"    B: {misses_text(report.cross)}")
    print("  " + report.cpu.report("both instances").replace("\n", "\n  "))


def print_summary(
    reports: list[RunReport],
    feeds: tuple[list[FeedClient], list[FeedClient]],
    listening: tuple[int, int],
    servers: tuple[Server, Server],
) -> None:
    """Print the figures of all runs together, the checks and the verdict."""
    print(f"\nall {len(reports)} runs")
    print(table_header())
    for label, index in (
        ("A's sockets (same instance, baseline)", 0),
        ("B's sockets (cross-instance)", 1),
    ):
        pooled = Spread.of([ms for report in reports for ms in report.samples[index]])
        print(spread_row(label, pooled))
    print(f"  {'run':<6}{'A p50':>9}{'A p99':>9}{'B p50':>9}{'B p99':>9}{'B max':>9}  misses")
    for number, report in enumerate(reports, start=1):
        same, cross = report.same, report.cross
        misses = sum(same.missing.values()) + sum(cross.missing.values())
        twice = same.duplicates + cross.duplicates
        print(
            f"  {number:<6}{same.latency.p50:>9.1f}{same.latency.p99:>9.1f}"
            f"{cross.latency.p50:>9.1f}{cross.latency.p99:>9.1f}{cross.latency.max:>9.1f}"
            f"  {misses} missing, {twice} duplicates"
        )

    found, expected = listening
    print(f"\nlistening for notifications before the first run: {found} of {expected} workers")
    closed = [client.error for clients in feeds for client in clients if client.error]
    print(
        f"sockets that failed or closed early: {len(closed)}"
        f"{' (' + closed[0] + ')' if closed else ''}"
    )
    for name, server in zip("AB", servers, strict=True):
        errors, lost = log_problems(server)
        print(f"instance {name} log: {errors} error lines, {lost} lost-notification warnings")

    exactly_once = all(
        not side.missing and side.duplicates == 0 and not report.failed
        for report in reports
        for side in (report.same, report.cross)
    )
    print(f"every socket got every delivery exactly once: {'yes' if exactly_once else 'no'}")
    met = all(report.cross.latency.p99 < GOAL_P99_MS for report in reports)
    p99s = ", ".join(f"{report.cross.latency.p99:.1f}" for report in reports)
    print(
        f"cross-instance p99 < {GOAL_P99_MS:.0f} ms in all {len(reports)} runs: "
        f"{'yes' if met else 'no'} ({p99s} ms)"
    )


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Make the database, start both instances, open the sockets, then measure each run."""
    token = secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(16)

    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(fresh_database())
        envs = [
            {**server_env(workdir / name / "data", token), "DASHBOARD_DATABASE_URL": database_url}
            for name in ("a", "b")
        ]
        # Before serve: the admin exists (in the shared database) for both instances. One
        # after the other, so that their migrations never race on the empty database.
        create_admin(envs[0], password)
        print("starting instances A and B (zapi-dashboard serve)...", flush=True)
        servers = (
            start_instance(stack, args, workdir / "a", envs[0]),
            start_instance(stack, args, workdir / "b", envs[1]),
        )

        print(f"opening {args.clients} sockets on each instance...", flush=True)
        feeds: list[list[FeedClient]] = []
        for server in servers:
            session = sign_in(server.base_url, password)
            stack.callback(session.close)
            clients, _refused = stack.enter_context(open_feeds(server, session, args.clients))
            feeds.append(clients)
        # Each worker's first socket starts its listener; wait for them so that the runs
        # measure notifications, not the polling the feed falls back on meanwhile.
        expected = 2 * args.workers
        listening = (wait_for_listeners(database_url, expected), expected)

        poster = Poster(servers[0].webhook_url)
        stack.callback(poster.close)
        prefix = secrets.token_hex(6).upper()
        every_client = [*feeds[0], *feeds[1]]
        if args.warmup > 0:
            print(f"warm-up ({args.warmup:g} s)...", flush=True)
            warmup = make_posts(prefix + "W", round(args.rate * args.warmup))
            paced_posts(poster, warmup, args.rate)
            wait_for_deliveries(every_client, [post.message_id for post in warmup if post.ok])

        pids = server_pids(list(servers))
        reports = []
        for number in range(1, args.runs + 1):
            print(f"run {number}: posting {args.rate:g}/s for {args.duration:g} s...", flush=True)
            posts = make_posts(f"{prefix}R{number}", round(args.rate * args.duration))
            reports.append(measure_run(poster, posts, args.rate, (feeds[0], feeds[1]), pids))

        print(
            f"\ntwo instances of zapi-dashboard serve ({args.workers} worker(s) x {args.threads} "
            f"threads each) on one PostgreSQL database; {args.clients} live sockets on each; "
            f"{args.rate:g} POST/s to A for {args.duration:g} s per run, after {args.warmup:g} s "
            f"warm-up; clients, servers and PostgreSQL share {os.cpu_count()} CPUs"
        )
        for number, report in enumerate(reports, start=1):
            print_run(number, report, args.clients)
        print_summary(reports, (feeds[0], feeds[1]), listening, servers)


if __name__ == "__main__":
    sys.exit(common.main("instances", parse_args, run))
