"""Mixed-load benchmark: paced webhooks beside live sockets and searches, on both databases.

For each database kind it starts ``zapi-dashboard serve`` on free ports of 127.0.0.1: on
SQLite one instance with a fresh data dir, on PostgreSQL two instances (A and B, data dirs
of their own) on one fresh database. Each run sends the same webhook schedule twice, open
loop: POST i is due at t0 + i/rate, goes out from a pool of threads so that a slow answer
never holds back a later POST, and its latency runs from its due time to its answer. First
alone (no socket open, no search: the run's baseline), then with N live sockets on
/ws/deliveries and S searches a second, open loop too: the /search page and /api/messages
in turn, for the number every webhook writes, with a signed-in session. On PostgreSQL the
webhooks, the sockets and the searches go to A and B in turn. For both halves it reports
the webhook's p50/p99/max, its errors and the "database is locked" lines of the server
logs; for the mixed half also the searches' latency (due time to answer), the sockets'
end-to-end latency (a POST's due time to its delivery's receipt, per socket and message)
and every socket's missing and duplicate deliveries.
The exit code is 0 whatever the figures; non-zero only when the benchmark could not run.

Usage: python bench/mixed.py [--rate 50] [--duration 60] [--sockets 100] [--searches 5]
                             [--database {sqlite,postgresql,both}] [--runs 1] [--warmup 1]
                             [--workers 1] [--threads N]
"""

import argparse
import contextlib
import math
import os
import secrets
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import common  # bench/ is on sys.path: the scripts live there
import instances
import requests
from common import (
    LOCKED_MESSAGE,
    REQUEST_TIMEOUT_S,
    SEED_CALLBACK,
    BenchError,
    CpuShares,
    CpuWatch,
    Exchange,
    FeedClient,
    Post,
    Poster,
    Server,
    Spread,
    ThreadSessions,
    create_admin,
    error_lines,
    make_posts,
    open_feeds,
    paced,
    server_env,
    sign_in,
    wait_for_deliveries,
)

from dashboard.config import DEFAULTS
from dashboard.server.gunicorn import DEFAULT_THREADS, DEFAULT_WORKERS

GOAL_P99_MS = 200.0
SQLITE, POSTGRESQL = "sqlite", "postgresql"
DATABASE_NAMES = {SQLITE: "SQLite", POSTGRESQL: "PostgreSQL"}
# Every webhook of the benchmark is about this number, so every search finds its messages.
SEARCHED_PHONE = SEED_CALLBACK["phone"]
SEARCH_PATHS = {"/search page": "/search?phone=", "/api/messages": "/api/messages?phone="}
# Threads that send the paced searches: enough that a slow answer never delays the next.
SEARCH_THREADS = 8


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="webhook POSTs per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of each half")
    parser.add_argument("--sockets", type=int, default=100, help="live sockets (all instances)")
    parser.add_argument("--searches", type=float, default=5.0, help="searches per second")
    parser.add_argument(
        "--database", choices=(SQLITE, POSTGRESQL, "both"), default="both", help="which to load"
    )
    parser.add_argument("--runs", type=int, default=1, help="measured runs on each database")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="gunicorn workers (serve's default)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per worker (serve's default)",
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of unmeasured POSTs first (0: none)"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, db)")
    args = parser.parse_args()
    for name in ("rate", "duration", "sockets", "searches", "runs", "workers"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.threads is not None and args.threads <= 0:
        parser.error("--threads must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


# --- the servers of one database kind ------------------------------------------------------


@dataclass
class Search(Exchange):
    """One search request: the page or the API, on one instance, through signed-in sessions."""

    kind: str
    url: str
    sessions: ThreadSessions = field(repr=False)

    def send(self) -> None:
        """GET the search, body and all, noting the times and the outcome."""
        session = self.sessions.session()
        self.run(lambda: session.get(self.url, timeout=REQUEST_TIMEOUT_S))


@dataclass(frozen=True)
class Deployment:
    """The running servers of one database kind, signed in, with their webhook senders."""

    kind: str
    servers: list[Server]
    sessions: list[requests.Session]  # one signed-in session per server, for the sockets
    searchers: list[ThreadSessions]  # the same sign-ins, one session per search thread
    posters: list[Poster]
    database_url: str | None  # PostgreSQL's, to count its listeners; None on SQLite
    workers: int
    threads: int
    socket_limit: int

    def description(self) -> str:
        """What runs, as the report's headings say it."""
        name = DATABASE_NAMES[self.kind]
        count = len(self.servers)
        limit = self.socket_limit
        sockets = "" if limit == DEFAULTS["SOCKETS_PER_WORKER"] else f", {limit} sockets a worker"
        servers = "1 instance" if count == 1 else f"{count} instances on one database"
        return (
            f"{name}: zapi-dashboard serve, {servers}, {self.workers} worker(s) x "
            f"{self.threads} threads each{sockets}"
        )


def capacity(args: argparse.Namespace, instance_count: int) -> tuple[int, int]:
    """Threads and sockets per worker that let one worker hold its instance's share of sockets."""
    # A socket holds no thread: only a share beyond serve's socket limit needs a setting.
    share = math.ceil(args.sockets / instance_count)
    return args.threads or DEFAULT_THREADS, max(DEFAULTS["SOCKETS_PER_WORKER"], share)


def deploy(
    stack: contextlib.ExitStack, kind: str, args: argparse.Namespace, workdir: Path
) -> Deployment:
    """Start the servers of ``kind`` (one on SQLite, two on one PostgreSQL database), sign in."""
    token = secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(16)
    names = ("sqlite",) if kind == SQLITE else ("a", "b")
    threads, limit = capacity(args, len(names))
    database_url = None
    if kind == POSTGRESQL:
        database_url = stack.enter_context(instances.fresh_database("mixed"))
    base = workdir / kind
    base.mkdir()
    envs = []
    for name in names:
        env = server_env(base / name / "data", token)
        if database_url is not None:
            env["DASHBOARD_DATABASE_URL"] = database_url
        if limit != DEFAULTS["SOCKETS_PER_WORKER"]:
            env["DASHBOARD_SOCKETS_PER_WORKER"] = str(limit)
        envs.append(env)
    # Before serve: the admin exists (in the shared database on PostgreSQL) for every instance.
    create_admin(envs[0], password)
    settings = argparse.Namespace(workers=args.workers, threads=threads)
    servers = [
        instances.start_instance(stack, settings, base / name, env)
        for name, env in zip(names, envs, strict=True)
    ]
    sessions, searchers, posters = [], [], []
    for server in servers:
        session = sign_in(server.base_url, password)
        stack.callback(session.close)
        sessions.append(session)
        searcher = ThreadSessions(session.cookies)
        stack.callback(searcher.close)
        searchers.append(searcher)
        poster = Poster(server.webhook_url)
        stack.callback(poster.close)
        posters.append(poster)
    return Deployment(
        kind, servers, sessions, searchers, posters, database_url, args.workers, threads, limit
    )


def in_turn(posters: list[Poster], posts: list[Post]) -> Callable[[Post], None]:
    """A send function that gives post i of ``posts`` to poster i mod the number of posters."""
    poster_of = {post.message_id: posters[i % len(posters)] for i, post in enumerate(posts)}
    return lambda post: poster_of[post.message_id].send(post)


def make_searches(deployment: Deployment, count: int) -> list[Search]:
    """``count`` searches for SEARCHED_PHONE: the page and the API in turn, instances in turn."""
    kinds = list(SEARCH_PATHS)
    searches = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        instance = (index // len(kinds)) % len(deployment.servers)
        url = deployment.servers[instance].base_url + SEARCH_PATHS[kind] + SEARCHED_PHONE
        searches.append(Search(kind, url, deployment.searchers[instance]))
    return searches


def check_searches(deployment: Deployment) -> None:
    """Make each kind of search once on each instance; fail unless every one answers 200."""
    for search in make_searches(deployment, len(SEARCH_PATHS) * len(deployment.servers)):
        search.send()
        if not search.ok:
            raise BenchError(f"GET {search.url} gave {search.error or search.status}")


def newest_id(deployment: Deployment) -> int:
    """The id of the newest stored callback (0 with none): new sockets start after it."""
    url = f"{deployment.servers[0].base_url}/api/deliveries?limit=1"
    answer = deployment.sessions[0].get(url, timeout=REQUEST_TIMEOUT_S)
    if answer.status_code != 200:
        raise BenchError(f"GET /api/deliveries gave {answer.status_code}")
    items = answer.json()["items"]
    return items[0]["id"] if items else 0


def socket_shares(count: int, instance_count: int) -> list[int]:
    """``count`` sockets split as evenly as they go over the instances."""
    return [count // instance_count + (i < count % instance_count) for i in range(instance_count)]


def log_counts(servers: list[Server]) -> tuple[int, int]:
    """Error lines and "database is locked" messages in all the servers' logs so far."""
    texts = [server.log_text() for server in servers]
    return sum(error_lines(text) for text in texts), sum(t.count(LOCKED_MESSAGE) for t in texts)


# --- one run's figures ---------------------------------------------------------------------


@dataclass(frozen=True)
class Webhooks:
    """What one half's webhooks measured, with the servers' logs and CPU over that half."""

    latency: Spread  # due time -> answer (open loop), ms, of the 200s
    round_trip: Spread  # sent -> answer
    pace_lag: Spread  # due time -> sent
    sent: int
    failed: list[str]
    log_errors: int
    locked: int
    cpu: CpuShares


@dataclass(frozen=True)
class Sockets:
    """What the live sockets saw of the mixed half's webhooks."""

    latency: Spread  # a POST's due time -> receipt, per (socket, message), ms
    expected: int
    missing: int
    duplicates: int
    closed: list[str]
    refused: int  # 503s while opening (a worker full), retried
    listening: tuple[int, int] | None  # PostgreSQL: workers listening, of how many


@dataclass(frozen=True)
class RunReport:
    """One run: the webhooks alone and under the mixed load, the searches and the sockets."""

    alone: Webhooks
    mixed: Webhooks
    searches: list[Search]
    sockets: Sockets

    def search_spread(self, kind: str | None = None) -> Spread:
        """Due time -> answer of the searches of ``kind`` (all kinds when None) that got a 200."""
        chosen = [s for s in self.searches if s.ok and (kind is None or s.kind == kind)]
        return Spread.of([search.latency_ms for search in chosen])

    def errors(self) -> int:
        """Webhooks and searches of the mixed half that got no 200."""
        return len(self.mixed.failed) + sum(not search.ok for search in self.searches)

    def goal_met(self) -> bool:
        """Webhook p99 under load < goal, no error, no "database is locked" in the run."""
        return (
            self.mixed.latency.p99 < GOAL_P99_MS
            and self.errors() == 0
            and self.alone.locked + self.mixed.locked == 0
        )

    def exactly_once(self) -> bool:
        """Whether every socket got every delivery of the mixed half exactly once."""
        return self.sockets.missing == 0 and self.sockets.duplicates == 0


def load(
    deployment: Deployment,
    posts: list[Post],
    rate: float,
    clients: list[FeedClient],
    searches: tuple[list[Search], float],
) -> Webhooks:
    """Send ``posts`` (and the searches beside them), wait for the sockets, sum up the half."""
    errors_before, locked_before = log_counts(deployment.servers)
    watch = CpuWatch(instances.server_pids(deployment.servers))
    with ThreadPoolExecutor(1, thread_name_prefix="searches") as background:
        searching = background.submit(paced, Search.send, *searches, SEARCH_THREADS)
        paced(in_turn(deployment.posters, posts), posts, rate)
        searching.result()
    ok = [post for post in posts if post.ok]
    wait_for_deliveries(clients, [post.message_id for post in ok])
    cpu = watch.shares()
    errors_after, locked_after = log_counts(deployment.servers)
    return Webhooks(
        latency=Spread.of([post.latency_ms for post in ok]),
        round_trip=Spread.of([(post.answered - post.sent) * 1000 for post in ok]),
        pace_lag=Spread.of([(post.sent - post.due) * 1000 for post in posts]),
        sent=len(posts),
        failed=[post.error or f"HTTP {post.status}" for post in posts if not post.ok],
        log_errors=errors_after - errors_before,
        locked=locked_after - locked_before,
        cpu=cpu,
    )


def socket_figures(
    posts: list[Post],
    clients: list[FeedClient],
    refused: int,
    listening: tuple[int, int] | None,
) -> Sockets:
    """Every socket's latency per message from the POST's due time, and its misses."""
    ok = [post for post in posts if post.ok]
    latencies, missing = [], 0
    for client in clients:
        for post in ok:
            received = client.received.get(post.message_id)
            if received is None:
                missing += 1
            else:
                latencies.append((received - post.due) * 1000)
    return Sockets(
        latency=Spread.of(latencies),
        expected=len(ok) * len(clients),
        missing=missing,
        duplicates=sum(client.duplicates for client in clients),
        closed=[client.error for client in clients if client.error],
        refused=refused,
        listening=listening,
    )


def measure_run(deployment: Deployment, args: argparse.Namespace, prefix: str) -> RunReport:
    """The webhook schedule alone, then again with the sockets open and the searches going."""
    count = round(args.rate * args.duration)
    alone = load(deployment, make_posts(prefix + "A", count), args.rate, [], ([], args.searches))
    posts = make_posts(prefix + "M", count)
    with contextlib.ExitStack() as stack:
        after = newest_id(deployment)
        clients: list[FeedClient] = []
        refused = 0
        shares = socket_shares(args.sockets, len(deployment.servers))
        for server, session, share in zip(
            deployment.servers, deployment.sessions, shares, strict=True
        ):
            opened, refused_here = stack.enter_context(open_feeds(server, session, share, after))
            clients += opened
            refused += refused_here
        listening = None
        if deployment.database_url is not None:
            # Each worker's first socket starts its listener: measure notifications, not the
            # polling the feed falls back on until then.
            expected = len(deployment.servers) * deployment.workers
            listening = (instances.wait_for_listeners(deployment.database_url, expected), expected)
        searches = make_searches(deployment, round(args.searches * args.duration))
        mixed = load(deployment, posts, args.rate, clients, (searches, args.searches))
        sockets = socket_figures(posts, clients, refused, listening)
    return RunReport(alone, mixed, searches, sockets)


# --- the report ------------------------------------------------------------------------------


def spread_row(label: str, spread: Spread) -> str:
    """One latency row: p50, p99, max (ms) and the sample count."""
    return f"  {label:<50}{spread.p50:>9.1f}{spread.p99:>9.1f}{spread.max:>9.1f}{spread.count:>9}"


def failures_text(failed: list[str]) -> str:
    """How many failed, and the first failure's reason."""
    return f"{len(failed)} failed" + (f" ({failed[0]})" if failed else "")


def print_run(deployment: Deployment, number: int, report: RunReport) -> None:
    """Print one run's table, its counts, its delivery check and its CPU shares."""
    alone, mixed, sockets = report.alone, report.mixed, report.sockets
    print(f"\n{DATABASE_NAMES[deployment.kind]}, run {number}")
    print(f"  {'ms':<50}{'p50':>9}{'p99':>9}{'max':>9}{'samples':>9}")
    print(spread_row("webhooks alone (baseline): due -> answer", alone.latency))
    print(spread_row("webhooks under the mixed load: due -> answer", mixed.latency))
    print(spread_row("  of which sent -> answer (round trip)", mixed.round_trip))
    print(spread_row("  of which due -> sent (pacing lag)", mixed.pace_lag))
    for kind in SEARCH_PATHS:
        print(spread_row(f"searches, {kind}: due -> answer", report.search_spread(kind)))
    print(spread_row("searches, both kinds", report.search_spread()))
    print(spread_row("sockets: POST due -> receipt on each socket", sockets.latency))
    failed_searches = [s.error or f"HTTP {s.status}" for s in report.searches if not s.ok]
    print(
        f"  webhooks alone: {alone.sent} sent, {failures_text(alone.failed)}; under load: "
        f"{mixed.sent} sent, {failures_text(mixed.failed)}; searches: "
        f"{len(report.searches)} sent, {failures_text(failed_searches)}"
    )
    print(
        f"  server logs: '{LOCKED_MESSAGE}' alone {alone.locked}, under load {mixed.locked}; "
        f"error lines alone {alone.log_errors}, under load {mixed.log_errors}"
    )
    print(
        f"  deliveries: {sockets.expected} expected (messages x sockets), missing "
        f"{sockets.missing}, duplicates {sockets.duplicates}; sockets closed early "
        f"{len(sockets.closed)}{' (' + sockets.closed[0] + ')' if sockets.closed else ''}; "
        f"503s while opening {sockets.refused}"
    )
    if sockets.listening is not None:
        found, expected = sockets.listening
        print(f"  workers listening for notifications: {found} of {expected}")
    for label, half in (("alone", alone), ("under load", mixed)):
        text = half.cpu.report("servers").replace("\n", "\n  ")
        print(f"  {label}: {text}")


def print_summary(args: argparse.Namespace, results: list[tuple[str, list[RunReport]]]) -> None:
    """Print every run's headline figures and the goal verdicts."""
    print(
        f"\nsummary: webhooks {args.rate:g}/s for {args.duration:g} s, alone and with "
        f"{args.sockets} live sockets and {args.searches:g} searches/s; ms"
    )
    print(
        f"  {'database':<12}{'run':>4}{'alone p99':>11}{'p50':>8}{'p99':>8}{'max':>8}"
        f"{'errors':>8}{'locked':>8}{'search p50':>12}{'p99':>8}{'sockets p99':>13}  missing/dup"
    )
    for kind, reports in results:
        for number, report in enumerate(reports, start=1):
            mixed, searches = report.mixed, report.search_spread()
            print(
                f"  {DATABASE_NAMES[kind]:<12}{number:>4}{report.alone.latency.p99:>11.1f}"
                f"{mixed.latency.p50:>8.1f}{mixed.latency.p99:>8.1f}{mixed.latency.max:>8.1f}"
                f"{report.errors():>8}{report.alone.locked + mixed.locked:>8}"
                f"{searches.p50:>12.1f}{searches.p99:>8.1f}{report.sockets.latency.p99:>13.1f}"
                f"  {report.sockets.missing}/{report.sockets.duplicates}"
            )
    print(
        "  (p50/p99/max: webhooks under the mixed load, due time -> answer; errors: webhooks\n"
        "   and searches under load without a 200; locked: in the server logs over the run)"
    )
    print(
        f"\ngoal in every run: webhook p99 under the mixed load < {GOAL_P99_MS:.0f} ms, "
        f"0 errors, 0 '{LOCKED_MESSAGE}'"
    )
    for kind, reports in results:
        verdicts = ", ".join(
            f"run {number} {'MET' if report.goal_met() else 'NOT MET'}"
            for number, report in enumerate(reports, start=1)
        )
        met = all(report.goal_met() for report in reports)
        print(f"  {DATABASE_NAMES[kind]}: {'MET' if met else 'NOT MET'} ({verdicts})")
    for kind, reports in results:
        once = all(report.exactly_once() for report in reports)
        print(
            f"  {DATABASE_NAMES[kind]}: every socket got every delivery exactly once: "
            f"{'yes' if once else 'no'}"
        )


def measure_database(kind: str, args: argparse.Namespace, workdir: Path) -> list[RunReport]:
    """Start the servers of ``kind``, warm up, measure every run, print each; stop them all."""
    with contextlib.ExitStack() as stack:
        print(f"starting the servers on {DATABASE_NAMES[kind]}...", flush=True)
        deployment = deploy(stack, kind, args, workdir)
        prefix = secrets.token_hex(6).upper()
        if args.warmup > 0:
            print(f"warm-up ({args.warmup:g} s)...", flush=True)
            warmup = make_posts(prefix + "W", round(args.rate * args.warmup))
            paced(in_turn(deployment.posters, warmup), warmup, args.rate)
        # After the warm-up the number has messages, and the searches find them.
        check_searches(deployment)
        print(f"\n{deployment.description()}", flush=True)
        reports = []
        for number in range(1, args.runs + 1):
            print(
                f"run {number}: {args.duration:g} s alone, then {args.duration:g} s mixed...",
                flush=True,
            )
            report = measure_run(deployment, args, f"{prefix}R{number}")
            print_run(deployment, number, report)
            reports.append(report)
    return reports


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Measure each database kind asked for, then print the summary and the verdicts."""
    kinds = [SQLITE, POSTGRESQL] if args.database == "both" else [args.database]
    if POSTGRESQL in kinds and instances.psycopg is None:
        raise BenchError("psycopg is not installed (pip install -e '.[postgres]')")
    print(
        f"webhooks {args.rate:g}/s for {args.duration:g} s (open loop), alone then with "
        f"{args.sockets} live sockets and {args.searches:g} searches/s; {args.runs} run(s) on "
        f"{' and '.join(DATABASE_NAMES[kind] for kind in kinds)}; on PostgreSQL the webhooks, "
        f"sockets and searches go to instances A and B in turn; clients, servers and "
        f"databases share {os.cpu_count()} CPUs",
        flush=True,
    )
    results = [(kind, measure_database(kind, args, workdir)) for kind in kinds]
    print_summary(args, results)


if __name__ == "__main__":
    sys.exit(common.main("mixed", parse_args, run))
