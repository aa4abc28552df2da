"""Fault runs: the faults of tests/test_faults.py, many more times, with their figures.

Client threads post distinct callbacks and resend each until it gets a 200 while:

- ``sqlite-kill``: the whole server (gunicorn master and workers) is SIGKILLed ``--rounds``
  times at random moments and restarted on the same data dir and port;
- ``postgres-kill``: the same, to one of two instances sharing a PostgreSQL database;
- ``disk-full``: the data dir's own small file system is filled and freed ``--rounds`` times;
- ``postgres-restart``: a PostgreSQL cluster of its own (made with ``initdb`` on a free
  port, so no other user of this machine's PostgreSQL sees the outage) is stopped and
  started ``--restarts`` times.

Afterwards every callback that got a 200 must be stored exactly once (and the SQLite file
pass its integrity check). It prints the figures and "N passed, N failed" over the
scenarios; the exit code is 0 whatever they show, non-zero only when a run could not start.
Run as root (the disk scenario mounts a tmpfs) from the repository root:

    python bench/faults.py --rounds 20
    python bench/faults.py --rounds 5 --clients 64 --scenarios sqlite-kill,disk-full
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The fault drivers live with the tests, so both run the very same faults.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults import (
    Load,
    MountRefused,
    fill,
    health,
    integrity,
    kill_repeatedly,
    private_postgres,
    small_filesystem,
    sqlite_url,
    storage_faults,
)
from tests.support import (
    POSTGRES_URL,
    drop_run_database,
    free_port,
    reset_postgres,
    start_server,
    stop_server,
    wait_until,
)

SCENARIOS = ("sqlite-kill", "postgres-kill", "disk-full", "postgres-restart")


def main() -> int:
    """Run the chosen scenarios and print their figures."""
    options = parse_arguments()
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    print(f"seed {seed}, {options.clients} clients, {options.rounds} rounds")
    rng = random.Random(seed)
    runs = {
        "sqlite-kill": lambda work: sqlite_kill(work, options.clients, options.rounds, rng),
        "postgres-kill": lambda work: postgres_kill(work, options.clients, options.rounds, rng),
        "disk-full": lambda work: disk_full(work, options.clients, options.rounds),
        "postgres-restart": lambda work: postgres_restart(work, options.clients, options.restarts),
    }
    verdicts = []
    try:
        for name in options.scenarios:
            with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as work:
                print(f"\n== {name}")
                started = time.monotonic()
                problems = runs[name](Path(work))
                print(f"   {time.monotonic() - started:.1f} s")
                for problem in problems[:20]:
                    print(f"   PROBLEM {problem}")
                verdicts.append(not problems)
    finally:
        drop_run_database()
    print(f"\n{verdicts.count(True)} passed, {verdicts.count(False)} failed")
    return 0


def parse_arguments() -> argparse.Namespace:
    """The command line: rounds, clients, restarts, scenarios, seed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=20, help="kills, or disk fills (20)")
    parser.add_argument("--clients", type=int, default=32, help="client threads (32)")
    parser.add_argument("--restarts", type=int, default=1, help="PostgreSQL restarts (1)")
    parser.add_argument("--seed", type=int, help="random seed of the kill moments")
    parser.add_argument(
        "--scenarios",
        type=lambda text: [name for name in text.split(",") if name],
        default=list(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (all)",
    )
    options = parser.parse_args()
    unknown = set(options.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return options


def report(load: Load, database_url: str) -> list[str]:
    """Print the load's figures; return what went wrong."""
    answers = ", ".join(f"{answer}: {count}" for answer, count in load.answers.most_common())
    print(f"   {len(load.acked)} callbacks got their 200; answers {answers}")
    for reason, count in load.refusals.most_common():
        print(f"   503 x{count}: {reason}")
    problems = [f"unexpected answer {answer}" for answer in load.unexpected]
    problems += [f"{message_id} never got a 200" for message_id in load.stuck]
    return problems + storage_faults(load, database_url)


def timed_restarts(start: Callable[[str], object]) -> tuple[Callable[[str], object], list]:
    """``start``, recording how long each restart took."""
    seconds = []

    def restart(name):
        began = time.monotonic()
        server = start(name)
        seconds.append(time.monotonic() - began)
        return server

    return restart, seconds


def print_restarts(seconds: list[float]) -> None:
    """The restart times: how long a killed server was away."""
    if seconds:
        print(
            f"   {len(seconds)} kills; restart took median {statistics.median(seconds):.1f} s, "
            f"max {max(seconds):.1f} s"
        )


def sqlite_kill(work: Path, clients: int, rounds: int, rng: random.Random) -> list[str]:
    """SIGKILL a server on SQLite ``rounds`` times under load."""
    data_dir, port, servers = work / "data", free_port(), []

    def start(name):
        servers.append(start_server(data_dir, "--workers", "2", port=port, name=name))
        return servers[-1]

    restart, seconds = timed_restarts(start)
    try:
        with Load([start("server").webhook_url], clients) as load:
            kill_repeatedly(servers[-1], restart, load, rounds, rng)
    finally:
        stop_server(servers[-1])
    print_restarts(seconds)
    verdict = integrity(data_dir)
    print(f"   integrity_check: {verdict}")
    problems = report(load, sqlite_url(data_dir))
    return problems + ([] if verdict == "ok" else [f"integrity_check: {verdict}"])


def postgres_kill(work: Path, clients: int, rounds: int, rng: random.Random) -> list[str]:
    """SIGKILL one of two instances on PostgreSQL ``rounds`` times under load."""
    reset_postgres()
    data_dir, victim_port, servers = work / "shared", free_port(), []
    env = {"DASHBOARD_DATABASE_URL": POSTGRES_URL}

    def start(name, port=victim_port):
        servers.append(start_server(data_dir, "--workers", "2", env=env, name=name, port=port))
        return servers[-1]

    restart, seconds = timed_restarts(start)
    try:
        victim, survivor = start("victim"), start("survivor", free_port())
        with Load([victim.webhook_url, survivor.webhook_url], clients) as load:
            kill_repeatedly(victim, restart, load, rounds, rng)
    finally:
        for server in servers:
            stop_server(server)
    print_restarts(seconds)
    return report(load, POSTGRES_URL)


def disk_full(work: Path, clients: int, rounds: int) -> list[str]:
    """Fill and free the data dir's file system ``rounds`` times under load."""
    try:
        with small_filesystem(work / "disk", "64m") as volume:
            return fill_and_free(volume, clients, rounds)
    except MountRefused as refused:
        return [str(refused)]


def fill_and_free(volume: Path, clients: int, rounds: int) -> list[str]:
    """The disk-full rounds on a server whose data dir is on ``volume``."""
    data_dir, filler = volume / "data", volume / "filler"
    server = start_server(data_dir)
    noticed, resumed, cleared = [], [], []
    try:
        with Load([server.webhook_url], clients) as load:
            for _round in range(rounds):
                load.wait_for_acks(20)
                began = time.monotonic()
                fill(filler)
                wait_until(lambda: health(server)[0] == 503, message="/healthz to say full")
                noticed.append(time.monotonic() - began)
                began = time.monotonic()
                filler.unlink()
                load.wait_for_acks(1, message="storing to resume")
                resumed.append(time.monotonic() - began)
                wait_until(lambda: health(server)[0] == 200, message="/healthz to clear")
                cleared.append(time.monotonic() - began)
    finally:
        stop_server(server)
    for label, seconds in (
        ("full -> /healthz 503", noticed),
        ("freed -> first 200", resumed),
        ("freed -> /healthz 200", cleared),
    ):
        print(f"   {label}: median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s")
    verdict = integrity(data_dir)
    print(f"   integrity_check: {verdict}")
    problems = report(load, sqlite_url(data_dir))
    return problems + ([] if verdict == "ok" else [f"integrity_check: {verdict}"])


def postgres_restart(work: Path, clients: int, restarts: int) -> list[str]:
    """Stop and start a PostgreSQL cluster of its own ``restarts`` times under load."""
    with private_postgres() as cluster:
        return _restart_under_load(cluster, work, clients, restarts)


def _restart_under_load(cluster, work: Path, clients: int, restarts: int) -> list[str]:
    server = start_server(work / "data", env={"DASHBOARD_DATABASE_URL": cluster.url})
    outages, recoveries, healthz_during = [], [], []
    try:
        with Load([server.webhook_url], clients) as load:
            for _restart in range(restarts):
                load.wait_for_acks(20)
                began = time.monotonic()
                with cluster.stopped():
                    healthz_during.append(health(server)[0])
                    wait_until(lambda: sum(load.refusals.values()) > 0, message="a 503")
                outages.append(time.monotonic() - began)
                began = time.monotonic()
                load.wait_for_acks(1, 120, "storing to recover")
                recoveries.append(time.monotonic() - began)
    finally:
        stop_server(server)
    print(
        f"   outages {', '.join(f'{s:.1f}' for s in outages)} s; /healthz during: {healthz_during}"
    )
    print(f"   back -> first 200: max {max(recoveries):.2f} s")
    problems = [
        f"/healthz answered {status} in an outage" for status in healthz_during if status != 503
    ]
    return problems + report(load, cluster.url)


if __name__ == "__main__":
    sys.exit(main())
