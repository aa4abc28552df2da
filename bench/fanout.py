"""Live fan-out benchmark: how fast a webhook reaches every open live feed, and at what cost.

Starts ``zapi-dashboard serve`` (gunicorn with the production settings) on a free port of
127.0.0.1 with a fresh data dir, creates an admin with the CLI, signs in, and opens N
websocket clients on ``/ws/deliveries``, all read by one thread (as a browser's event
loop reads its page's socket) that notes when every delivery arrived. It measures the
server's memory with the N sockets idle, the workers' CPU over an idle window (with no
socket open, then with the N sockets), and, while webhooks are POSTed at a steady pace, the
end-to-end latency from the start of each POST to its receipt on every socket, next to the
round trip of the same POSTs (the baseline of the same run).
The exit code is 0 whatever the figures; non-zero only when the benchmark could not run.

Usage: python bench/fanout.py [--clients 50] [--rate 50] [--duration 30]
                              [--workers 2] [--threads 64] [--idle 10] [--warmup 1]
"""

import argparse
import contextlib
import http.client
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import common  # bench/ is on sys.path: the scripts live there
from common import (
    LOCKED_MESSAGE,
    POLL_INTERVAL_S,
    START_DEADLINE_S,
    BenchError,
    CpuShares,
    CpuWatch,
    FeedClient,
    Post,
    Poster,
    Server,
    Spread,
    children_of,
    cpu_seconds,
    create_admin,
    error_lines,
    make_posts,
    open_feeds,
    paced_posts,
    proc_number,
    running_server,
    server_env,
    sign_in,
    wait_for_deliveries,
)

from dashboard.live import SQLITE_WATCH_SECONDS
from dashboard.server.gunicorn import DEFAULT_THREADS, DEFAULT_WORKERS

GOAL_P99_MS = 100.0
GOAL_MAX_MS = 500.0
# A team's 50 screens, and the 500 of a larger team's tabs (from 51 sockets on): what one
# small VPS must hold with serve's defaults.
FEW_SOCKETS = 50
GOAL_IDLE_CPU_PERCENT = {FEW_SOCKETS: 1.0, 500: 2.0}
GOAL_RSS_MB = {FEW_SOCKETS: 150.0, 500: 250.0}
GOAL_POST_P99_MS = 50.0  # with 500 sockets: the webhook itself stays fast
MB = 1_000_000  # the goal's unit; /proc reports KiB


TCP_ESTABLISHED = "01"


# --- the server -------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="open live sockets")
    parser.add_argument("--rate", type=float, default=50.0, help="webhook POSTs per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of POSTs")
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="gunicorn workers (serve's default)"
    )
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="threads per worker (serve's default)"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of each idle window")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of unmeasured POSTs first (0: none)"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (log, db)")
    args = parser.parse_args()
    for name in ("clients", "rate", "duration", "workers", "threads", "idle"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    return args


# --- /proc --------------------------------------------------------------------------------


def memory(pid: int) -> tuple[int, int | None]:
    """Resident set (VmRSS) and proportional set (Pss) of ``pid``, in bytes."""
    rss = proc_number(f"/proc/{pid}/status", "VmRSS")
    if rss is None:
        raise BenchError(f"cannot read the memory of process {pid}")
    pss = proc_number(f"/proc/{pid}/smaps_rollup", "Pss")
    return rss * 1024, None if pss is None else pss * 1024


def thread_counters(pid: int) -> dict[int, tuple[int, int]]:
    """Per thread of ``pid``: ns spent on a CPU (schedstat) and voluntary context switches."""
    counters = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                cpu_ns = int((task / "schedstat").read_text().split()[0])
                switches = proc_number(str(task / "status"), "voluntary_ctxt_switches") or 0
                counters[int(task.name)] = (cpu_ns, switches)
    return counters


@dataclass(frozen=True)
class IdleCpu:
    """CPU used over an idle window, each figure in % of one core."""

    workers: float  # utime+stime of the worker processes, all their threads
    master: float
    waker: float  # in each worker, the thread that woke most often (the poller, if any)
    waker_wakeups: float  # that thread's wake-ups per second, averaged over the workers
    others: float  # the workers' other threads (schedstat)


def idle_cpu(workers: list[int], master: int, seconds: float) -> IdleCpu:
    """Measure the CPU the server uses over ``seconds`` in which the benchmark sends nothing."""
    threads_before = {pid: thread_counters(pid) for pid in workers}
    start = time.monotonic()
    workers_before, master_before = cpu_seconds(workers), cpu_seconds([master])
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    workers_used = cpu_seconds(workers) - workers_before
    master_used = cpu_seconds([master]) - master_before
    # The poller wakes every SQLITE_WATCH_SECONDS on SQLite, far more often than any other
    # idle thread (a socket's own thread wakes every few seconds), so in each worker
    # the thread with the most voluntary context switches is the poller.
    waker_ns, all_ns, wakeups = 0, 0, []
    for pid in workers:
        before = threads_before[pid]
        deltas = [
            (switches - before.get(tid, (0, 0))[1], cpu_ns - before.get(tid, (0, 0))[0])
            for tid, (cpu_ns, switches) in thread_counters(pid).items()
        ]
        all_ns += sum(cpu_ns for _, cpu_ns in deltas)
        if deltas:
            switches, cpu_ns = max(deltas)
            waker_ns += cpu_ns
            wakeups.append(switches / elapsed)
    return IdleCpu(
        workers=100.0 * workers_used / elapsed,
        master=100.0 * master_used / elapsed,
        waker=100.0 * waker_ns / 1e9 / elapsed,
        waker_wakeups=sum(wakeups) / len(wakeups) if wakeups else 0.0,
        others=100.0 * (all_ns - waker_ns) / 1e9 / elapsed,
    )


def connection_owners(port: int, pids: list[int]) -> dict[int, int]:
    """For each connection to ``port``: the client's port -> the pid holding the server side."""
    client_port_of_inode = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == TCP_ESTABLISHED and int(local.split(":")[1], 16) == port:
            client_port_of_inode[inode] = int(remote.split(":")[1], 16)
    owners = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    client_port = client_port_of_inode.get(int(target[8:-1]))
                    if client_port is not None:
                        owners[client_port] = pid
    return owners


def wait_for_workers(server: Server, count: int) -> list[int]:
    """Return the workers' pids once each has answered /healthz over a connection it holds."""
    deadline = time.monotonic() + START_DEADLINE_S
    answered: set[int] = set()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"the server exited with code {server.process.returncode}:\n{server.log_text()}"
            )
        workers = children_of(server.process.pid)
        if len(workers) == count and answered >= set(workers):
            return workers
        # The master accepts as soon as it binds; an answer shows a worker has loaded the
        # app, and the open keep-alive connection shows which one.
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            response.read()
            if response.status == 200 and connection.sock is not None:
                client_port = connection.sock.getsockname()[1]
                owner = connection_owners(server.port, workers).get(client_port)
                if owner is not None:
                    answered.add(owner)
        except OSError:
            time.sleep(POLL_INTERVAL_S)
        finally:
            connection.close()
    raise BenchError(f"not all {count} workers answered within {START_DEADLINE_S:.0f} s")


# --- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyReport:
    """What the paced POSTs measured."""

    end_to_end: Spread
    post_round_trip: Spread
    first_worker: Spread
    other_worker: Spread | None
    cross_process: Spread | None
    spread_in_worker: Spread
    pace_lag: Spread
    sent: int
    ok: int
    failed: list[str]
    missing: int
    duplicates: int
    last_receipt_after_last_answer_ms: float


def latency_report(
    posts: list[Post], clients: list[FeedClient], owner_of: dict[int, int]
) -> LatencyReport:
    """Latencies per (client, message) and per message and worker, from the recorded times."""
    ok = [post for post in posts if post.ok]
    end_to_end, first, other, cross, spread = [], [], [], [], []
    missing = 0
    last_receipt = 0.0
    for post in ok:
        by_worker: dict[int, list[float]] = {}
        for client in clients:
            received = client.received.get(post.message_id)
            if received is None:
                missing += 1
                continue
            last_receipt = max(last_receipt, received)
            latency = (received - post.sent) * 1000
            end_to_end.append(latency)
            by_worker.setdefault(owner_of.get(client.port, 0), []).append(latency)
        if not by_worker:
            continue
        firsts = sorted(min(latencies) for latencies in by_worker.values())
        first.append(firsts[0])
        if len(firsts) > 1:
            other.append(firsts[-1])
            cross.append(firsts[-1] - firsts[0])
        spread.extend(max(lat) - min(lat) for lat in by_worker.values())
    failed = [post.error or f"HTTP {post.status}" for post in posts if not post.ok]
    last_answer = max((post.answered for post in posts), default=0.0)
    return LatencyReport(
        end_to_end=Spread.of(end_to_end),
        post_round_trip=Spread.of([(p.answered - p.sent) * 1000 for p in ok]),
        first_worker=Spread.of(first),
        other_worker=Spread.of(other) if other else None,
        cross_process=Spread.of(cross) if cross else None,
        spread_in_worker=Spread.of(spread),
        pace_lag=Spread.of([(p.sent - p.due) * 1000 for p in posts]),
        sent=len(posts),
        ok=len(ok),
        failed=failed,
        missing=missing,
        duplicates=sum(client.duplicates for client in clients),
        last_receipt_after_last_answer_ms=(last_receipt - last_answer) * 1000,
    )


@dataclass
class MemoryRow:
    """One process's memory (bytes): without sockets, with the idle sockets, after the load."""

    name: str
    pid: int
    rss_no_socket: int
    rss: int = 0
    pss: int | None = None
    sockets: int | None = None
    rss_after: int | None = None


def memory_rows(master: int, workers: list[int]) -> list[MemoryRow]:
    """The master's and each worker's RSS before any socket is open."""
    rows = [MemoryRow("master", master, memory(master)[0])]
    for index, pid in enumerate(workers, start=1):
        rows.append(MemoryRow(f"worker {index}", pid, memory(pid)[0]))
    return rows


def note_idle_sockets(rows: list[MemoryRow], sockets: Counter[int]) -> None:
    """Record each process's RSS and PSS with the sockets open and idle."""
    for row in rows:
        row.rss, row.pss = memory(row.pid)
        row.sockets = None if row.name == "master" else sockets[row.pid]


def note_after_load(rows: list[MemoryRow]) -> None:
    """Record each process's RSS after the load (None for a process that is gone)."""
    for row in rows:
        rss = proc_number(f"/proc/{row.pid}/status", "VmRSS")
        row.rss_after = None if rss is None else rss * 1024


# --- the report -------------------------------------------------------------------------------


def total(values) -> int | None:
    """The sum of ``values``, or None if any is unknown."""
    values = list(values)
    return None if None in values else sum(values)


def mb(value: int | None) -> str:
    """Bytes as MB (10^6 bytes), or n/a."""
    return "n/a" if value is None else f"{value / MB:.1f}"


def spread_line(label: str, spread: Spread) -> str:
    """One latency row of the table."""
    return f"  {label:<52}{spread.p50:>9.2f}{spread.p99:>9.2f}{spread.max:>9.2f}{spread.count:>9}"


def print_report(
    args: argparse.Namespace,
    rows: list[MemoryRow],
    cpu: tuple[IdleCpu, IdleCpu, CpuShares],
    refused: int,
    latency: LatencyReport,
    clients: list[FeedClient],
    log_text: str,
) -> None:
    """Print the tables, the delivery checks and the goal verdicts."""
    cpu_baseline, cpu_sockets, load_cpu = cpu
    print(
        f"\nzapi-dashboard serve: {args.workers} workers x {args.threads} threads (gthread), "
        f"SQLite; {args.clients} live sockets; {args.rate:g} POST/s for {args.duration:g} s "
        f"after {args.warmup:g} s warm-up; client and server share {os.cpu_count()} CPUs"
    )

    print(
        "\nmemory, MB (10^6 bytes); PSS splits the pages the processes share "
        "(fork, libraries) among them"
    )
    print(
        f"  {'process':<10}{'pid':>8}{'RSS, no socket':>16}{'RSS, idle sockets':>19}"
        f"{'PSS, idle sockets':>19}{'sockets':>9}{'RSS after load':>16}"
    )
    for row in rows:
        sockets = "" if row.sockets is None else str(row.sockets)
        print(
            f"  {row.name:<10}{row.pid:>8}{mb(row.rss_no_socket):>16}{mb(row.rss):>19}"
            f"{mb(row.pss):>19}{sockets:>9}{mb(row.rss_after):>16}"
        )
    print(
        f"  {'total':<10}{'':>8}{mb(total(r.rss_no_socket for r in rows)):>16}"
        f"{mb(total(r.rss for r in rows)):>19}{mb(total(r.pss for r in rows)):>19}"
        f"{sum(r.sockets or 0 for r in rows):>9}{mb(total(r.rss_after for r in rows)):>16}"
    )
    print(f"  sockets refused with 503 while opening (worker full, retried): {refused}")

    print(f"\nidle CPU over {args.idle:g} s with no traffic, % of one core")
    print(
        f"  {'':<28}{'workers':>9}{'their most-waking thread':>30}{'their other':>13}"
        f"{'master':>9}\n"
        f"  {'':<28}{'(stat)':>9}{'(schedstat)':>30}{'(schedstat)':>13}"
    )
    for label, figures in (
        ("no socket open (baseline)", cpu_baseline),
        (f"{args.clients} sockets open", cpu_sockets),
    ):
        waker = f"{figures.waker:.2f} ({figures.waker_wakeups:.0f} wake-ups/s)"
        print(
            f"  {label:<28}{figures.workers:>9.2f}{waker:>30}{figures.others:>13.2f}"
            f"{figures.master:>9.2f}"
        )
    watch_ms = SQLITE_WATCH_SECONDS * 1000
    print(
        "  with sockets open, each worker's most-waking thread is its poller (it looks for\n"
        f"  commits every {watch_ms:g} ms: about {1000 / watch_ms:g} wake-ups/s);"
        " with none, it sleeps."
    )

    print("\nlatency, ms (per socket and message unless said)")
    print(f"  {'':<52}{'p50':>9}{'p99':>9}{'max':>9}{'samples':>9}")
    print(spread_line("end to end: POST start -> receipt on a socket", latency.end_to_end))
    print(spread_line("baseline: the same POSTs' own round trip", latency.post_round_trip))
    print(spread_line("per message: first socket to get it", latency.first_worker))
    if latency.other_worker is not None and latency.cross_process is not None:
        print(spread_line("per message: first socket of the later worker", latency.other_worker))
        print(spread_line("  difference: the later worker's delay", latency.cross_process))
    print(spread_line("within one worker: last socket - first socket", latency.spread_in_worker))
    print(spread_line("POST start - its due time (pacing lag)", latency.pace_lag))

    print(
        f"\nPOSTs: {latency.sent} sent, {latency.ok} answered 200, "
        f"{len(latency.failed)} failed{': ' + latency.failed[0] if latency.failed else ''}"
    )
    print(
        f"deliveries: {latency.ok} messages x {len(clients)} sockets = "
        f"{latency.ok * len(clients)} expected; missing {latency.missing}, "
        f"duplicates {latency.duplicates}; last one arrived "
        f"{latency.last_receipt_after_last_answer_ms:.1f} ms after the last POST's answer"
    )
    closed = [client.error for client in clients if client.error]
    others = sum((client.other_events for client in clients), Counter())
    print(
        f"sockets that failed or closed early: {len(closed)}"
        f"{' (' + closed[0] + ')' if closed else ''}; other events: {dict(others) or 'none'}"
    )
    print(
        f"server log: {error_lines(log_text)} error lines, "
        f"{log_text.count(LOCKED_MESSAGE)} 'locked'"
    )
    print(load_cpu.report())

    rss = sum(row.rss for row in rows)
    scale = FEW_SOCKETS if args.clients <= FEW_SOCKETS else 500
    idle_goal, rss_goal = GOAL_IDLE_CPU_PERCENT[scale], GOAL_RSS_MB[scale]
    goals = [
        (
            f"end-to-end p99 < {GOAL_P99_MS:.0f} ms",
            f"{latency.end_to_end.p99:.1f} ms",
            latency.end_to_end.p99 < GOAL_P99_MS,
        ),
        (
            f"end-to-end max < {GOAL_MAX_MS:.0f} ms",
            f"{latency.end_to_end.max:.1f} ms",
            latency.end_to_end.max < GOAL_MAX_MS,
        ),
        (
            f"workers' idle CPU < {idle_goal:g}% of a core (*)",
            f"{cpu_sockets.workers:.2f}%",
            cpu_sockets.workers < idle_goal,
        ),
        (
            f"server RSS < {rss_goal:.0f} MB, {args.clients} idle sockets (**)",
            f"{rss / MB:.1f} MB",
            rss / MB < rss_goal,
        ),
        (
            "every socket got every message once",
            f"{latency.missing} missing, {latency.duplicates} duplicates",
            latency.missing == 0 and latency.duplicates == 0 and latency.ok == latency.sent,
        ),
    ]
    if scale != FEW_SOCKETS:
        goals.append(
            (
                f"webhook POST p99 < {GOAL_POST_P99_MS:.0f} ms",
                f"{latency.post_round_trip.p99:.1f} ms",
                latency.post_round_trip.p99 < GOAL_POST_P99_MS,
            )
        )
    print("\ngoals")
    for label, value, met in goals:
        print(f"  {label:<46}{value:>28}   {'MET' if met else 'NOT MET'}")
    print(
        "  (*) all the CPU the workers used while idle with the sockets open: the pollers,\n"
        "      the live-sockets thread (a ping per socket every 25 s) and gunicorn's loop.\n"
        f"      The pollers' own threads (the most-waking thread of each worker) used "
        f"{cpu_sockets.waker:.2f}%.\n"
        "  (**) the sum of the processes' RSS counts the pages they share once per process;\n"
        f"      their PSS, which counts them once in all, totals "
        f"{mb(total(row.pss for row in rows))} MB."
    )
    verdict = all(met for _, _, met in goals)
    print(f"all goals: {'MET' if verdict else 'NOT MET'}")


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Start the server, open the sockets, measure idle memory and CPU, then the fan-out."""
    token = secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(16)
    env = server_env(workdir / "data", token)
    # Before serve: the admin exists, so serve prints no first-run setup link.
    create_admin(env, password)

    with contextlib.ExitStack() as stack:
        print("starting zapi-dashboard serve...", flush=True)
        server = stack.enter_context(running_server(args.workers, args.threads, workdir, env))
        workers = wait_for_workers(server, args.workers)
        master = server.process.pid

        print(f"idle, no socket open ({args.idle:g} s)...", flush=True)
        cpu_baseline = idle_cpu(workers, master, args.idle)
        rows = memory_rows(master, workers)

        session = sign_in(server.base_url, password)
        stack.callback(session.close)
        print(f"opening {args.clients} sockets...", flush=True)
        clients, refused = stack.enter_context(open_feeds(server, session, args.clients))
        owner_of = connection_owners(server.port, workers)
        sockets = Counter(owner_of.get(client.port, 0) for client in clients)
        note_idle_sockets(rows, sockets)

        print(f"idle, {args.clients} sockets open ({args.idle:g} s)...", flush=True)
        cpu_sockets = idle_cpu(workers, master, args.idle)

        poster = Poster(server.webhook_url)
        stack.callback(poster.close)
        prefix = secrets.token_hex(6).upper()
        if args.warmup > 0:
            print(f"warm-up ({args.warmup:g} s)...", flush=True)
            warmup = make_posts(prefix + "W", round(args.rate * args.warmup))
            paced_posts(poster, warmup, args.rate)
            wait_for_deliveries(clients, [post.message_id for post in warmup if post.ok])

        print(f"posting {args.rate:g}/s for {args.duration:g} s...", flush=True)
        posts = make_posts(prefix + "M", round(args.rate * args.duration))
        watch = CpuWatch([master, *workers])
        paced_posts(poster, posts, args.rate)
        wait_for_deliveries(clients, [post.message_id for post in posts if post.ok])
        load_cpu = watch.shares()
        note_after_load(rows)
        latency = latency_report(posts, clients, owner_of)
        log_text = server.log_text()

    print_report(
        args, rows, (cpu_baseline, cpu_sockets, load_cpu), refused, latency, clients, log_text
    )


if __name__ == "__main__":
    sys.exit(common.main("fanout", parse_args, run))
