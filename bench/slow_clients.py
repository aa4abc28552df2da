"""Slow-client benchmark: webhooks at 50/s beside as many stalled connections as threads.

Starts ``zapi-dashboard serve`` with its defaults on SQLite and sends webhook POSTs open
loop (latency runs from each POST's scheduled time). First alone, as the baseline of the
same run; then with as many slow connections as the server has threads open the whole
time: half send part of their headers and stop, half send their headers and then their
body a byte a second, never reaching its end. Prints p50/p99/max of both, errors, and how
many slow connections were still waiting at the end (none answered, none closed). The
exit code is 0 whatever the figures; non-zero only when the benchmark could not run.

Usage: python bench/slow_clients.py [--rate 50] [--duration 20] [--slow N]
"""

import argparse
import socket
import threading
from dataclasses import dataclass

from common import (
    Poster,
    Spread,
    main,
    make_posts,
    paced_posts,
    running_server,
    server_env,
    wait_until_serving,
)

from dashboard.server.gunicorn import DEFAULT_THREADS, DEFAULT_WORKERS

GOAL_P99_MS = 1000.0
TOKEN = "bench-token-0123456789abcdefABCDEF"


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="webhook POSTs per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each phase")
    parser.add_argument(
        "--slow", type=int, default=DEFAULT_THREADS, help="slow connections (serve's threads)"
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (log, db)")
    args = parser.parse_args()
    if not 0 < args.duration < 25:
        # The slow requests must stay unfinished, not be answered 408 mid-run.
        parser.error("--duration must be under 25 s (DASHBOARD_REQUEST_SECONDS is 30)")
    return args


class SlowClients:
    """Connections that never finish their request: half stalled, half trickling a body."""

    def __init__(self, port: int, count: int) -> None:
        self._stop = threading.Event()
        self.connections: list[socket.socket] = []
        head = (
            f"POST /webhooks/{TOKEN} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
        ).encode()
        for index in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=30)
            connection.sendall(head[:40] if index % 2 else head)
            self.connections.append(connection)
        self._trickler = threading.Thread(target=self._trickle, daemon=True)
        self._trickler.start()

    def _trickle(self) -> None:
        while not self._stop.wait(1.0):
            for connection in self.connections[::2]:
                connection.sendall(b" ")

    def still_waiting(self) -> int:
        """How many have neither been answered nor closed by the server."""
        waiting = 0
        for connection in self.connections:
            connection.setblocking(False)
            try:
                connection.recv(1)
            except BlockingIOError:
                waiting += 1
            except OSError:
                pass
        return waiting

    def close(self) -> None:
        """Stop trickling and close every connection."""
        self._stop.set()
        self._trickler.join()
        for connection in self.connections:
            connection.close()


@dataclass(frozen=True)
class Phase:
    """One phase's webhook figures."""

    label: str
    latency: Spread
    failed: int


def load(server, rate: float, duration: float, prefix: str, label: str) -> Phase:
    """Send ``rate`` webhooks a second for ``duration`` seconds; their figures."""
    poster = Poster(server.webhook_url)
    posts = make_posts(prefix, int(rate * duration))
    try:
        paced_posts(poster, posts, rate)
    finally:
        poster.close()
    latency = Spread.of([post.latency_ms for post in posts if post.ok])
    return Phase(label, latency, sum(1 for post in posts if not post.ok))


def run(args: argparse.Namespace, workdir) -> None:
    """Run both phases on one server and print the figures."""
    env = server_env(workdir, TOKEN)
    with running_server(DEFAULT_WORKERS, DEFAULT_THREADS, workdir, env) as server:
        wait_until_serving(server)
        load(server, args.rate, 2.0, "warm-", "warm-up")
        alone = load(server, args.rate, args.duration, "alone-", "alone (baseline)")
        slow = SlowClients(server.port, args.slow)
        try:
            label = f"beside {args.slow} slow connections"
            beside = load(server, args.rate, args.duration, "beside-", label)
            waiting = slow.still_waiting()
        finally:
            slow.close()
    print(f"serve's defaults: {DEFAULT_WORKERS} worker x {DEFAULT_THREADS} threads, SQLite")
    print(f"webhooks at {args.rate:g}/s for {args.duration:g} s, latency from the scheduled send")
    for phase in (alone, beside):
        spread = phase.latency
        print(
            f"  {phase.label:<36} p50 {spread.p50:7.1f} ms  p99 {spread.p99:7.1f} ms  "
            f"max {spread.max:7.1f} ms  ok {spread.count}  failed {phase.failed}"
        )
    print(f"slow connections still waiting at the end: {waiting} of {args.slow}")
    met = beside.latency.p99 < GOAL_P99_MS and beside.failed == 0 and waiting == args.slow
    print(f"goal (p99 < {GOAL_P99_MS:g} ms beside them, 0 failed): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    raise SystemExit(main("slow-clients", parse_args, run))
