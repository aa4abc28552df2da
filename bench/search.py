"""Search benchmark: phone searches, pages and CSV export at a million stored callbacks.

Builds a SQLite database of N callbacks (default 1,000,000) with realistic Brazilian
numbers: mobiles sent with and without the ninth digit, landlines, group statuses whose
member is a number, LIDs, a few busy numbers with thousands of callbacks each. Every
row goes through the product's own parser (``dashboard.payloads.parse``), so its search
keys are exactly the ones the webhook would store; the rows are written in bulk.

Then, over Q random queries each (default 200), it times:

- in process, the database work of one search (``deliveries.search``: the keyed query
  and loading the page's 50 rows): a whole number typed in a random format (both
  ninth-digit forms, with and without +55, trunk 0, punctuation), its last 8 digits,
  page 1 and page 50 of a busy number; next to two baselines from the same database: a
  primary-key lookup and the ``LIKE '%digits'`` scan an unindexed suffix search would be;
- over HTTP, the same searches as ``GET /api/deliveries`` on ``zapi-dashboard serve``
  (gunicorn, signed-in session, keep-alive), next to ``GET /healthz`` on the same server;
- in process, message searches (``messages.queries.search``, the rows the product builds
  from those callbacks with its own write path): a number's messages, one message by its
  messageId and by its zaapId;
- a CSV export of about 100,000 rows (every ``ReceivedCallback``) over HTTP: time to the
  last byte and the serving workers' peak RSS (``VmHWM``).

Goal at 1M rows: database p99 < 2 ms and API p99 < 25 ms for whole-number and suffix
searches and any page, database p99 < 2 ms for every message search; the export under
5 s with peak RSS under 150 MB.
Exit code 0 whatever the figures; non-zero only when the benchmark could not run.

Usage: python bench/search.py [--rows 1000000] [--queries 200] [--data-dir DIR]
"""

import argparse
import gc
import json
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import common  # bench/ is on sys.path: the scripts live there
from common import (
    REQUEST_TIMEOUT_S,
    BenchError,
    children_of,
    create_admin,
    proc_number,
    running_server,
    server_env,
    sign_in,
)
from sqlalchemy import func, insert, select, text

from dashboard import create_app, deliveries, phones
from dashboard.deliveries import Filters
from dashboard.extensions import db
from dashboard.messages import queries as message_queries
from dashboard.messages import store as message_store
from dashboard.messages.queries import MessageFilters
from dashboard.models import Delivery, Message, StatusMessageId
from dashboard.payloads import parse
from dashboard.phones import parse_query

GOAL_DB_P99_MS = 2.0
GOAL_API_P99_MS = 25.0
GOAL_EXPORT_S = 5.0
GOAL_EXPORT_RSS_MB = 150.0
MB = 1_000_000
PAGE = 50
BUSY_PAGE = 50
# Callbacks of each busy number: twice what page 50 needs.
BUSY_ROWS = PAGE * BUSY_PAGE * 2
BUILD_CHUNK = 20_000
LIKE_SCANS = 5
EXPORT_TYPE = "ReceivedCallback"

# Area codes of Brazil's largest cities first: real traffic clusters there.
AREAS = [11, 21, 31, 41, 51, 61, 71, 81, 85, 19, 27, 44, 48, 62, 92, 13, 15, 17, 24, 34]
STATUSES = ["SENT", "RECEIVED", "READ", "PLAYED"]
ERRORS = [
    ("Phone number does not exist", None),
    ("Message not delivered", "SHADOW_BAN"),
    ("Rate limit", "RATE_LIMIT"),
]


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="callbacks to store")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per case")
    parser.add_argument("--numbers", type=int, default=100_000, help="distinct phone numbers")
    parser.add_argument("--busy", type=int, default=10, help="numbers with 5,000 callbacks")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the data")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the database here and reuse it next time (building 1M rows takes minutes)",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    for name in ("rows", "queries", "numbers", "busy", "workers", "threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.rows < args.busy * BUSY_ROWS * 2:
        parser.error("--rows is too small for the busy numbers; lower --busy")
    return args


# --- the data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A Brazilian number: area code and subscriber (9 digits for a mobile)."""

    area: int
    subscriber: str

    @property
    def mobile(self) -> bool:
        """Whether it has a ninth digit that Z-API may leave out."""
        return len(self.subscriber) == 9

    def as_sent(self, rng: random.Random) -> str:
        """How Z-API writes it: a mobile a third of the time without its ninth digit."""
        subscriber = self.subscriber
        if self.mobile and rng.random() < 0.35:
            subscriber = subscriber[1:]
        return f"55{self.area}{subscriber}"

    def as_typed(self, rng: random.Random) -> str:
        """How a person might type it: one of many formats, either ninth-digit form."""
        subscriber = self.subscriber
        if self.mobile and rng.random() < 0.5:
            subscriber = subscriber[1:]
        local = f"{subscriber[:-4]}-{subscriber[-4:]}"
        formats = [
            f"+55 ({self.area}) {local}",
            f"55 {self.area} {local}",
            f"0{self.area} {local}",
            f"({self.area}) {local}",
            f"{self.area}{subscriber}",
            f"+55{self.area}{subscriber}",
            f"{self.area}.{subscriber[:-4]}.{subscriber[-4:]}",
        ]
        return rng.choice(formats)


def make_numbers(rng: random.Random, count: int) -> list[Number]:
    """``count`` distinct numbers, mostly mobiles."""
    numbers: set[Number] = set()
    while len(numbers) < count:
        area = rng.choice(AREAS) if rng.random() < 0.7 else rng.randint(11, 99)
        if area % 10 == 0:
            continue
        if rng.random() < 0.85:
            subscriber = f"9{rng.randint(6, 9)}{rng.randint(0, 9_999_999):07d}"
        else:
            subscriber = f"{rng.randint(2, 5)}{rng.randint(0, 9_999_999):07d}"
        numbers.add(Number(area, subscriber))
    return sorted(numbers, key=lambda n: (n.area, n.subscriber))


def make_callback(n: int, number: Number, rng: random.Random, moment: datetime) -> dict:
    """One realistic callback about ``number``: a send, a status, a group status or a LID."""
    stamp = int((moment - timedelta(milliseconds=rng.randint(50, 5000))).timestamp() * 1000)
    base = {"instanceId": "3C01A2B3C4D5E6F7", "momment": stamp}
    roll = rng.random()
    if roll < 0.10:
        return {
            **base,
            "type": EXPORT_TYPE,
            "phone": number.as_sent(rng),
            "messageId": f"R{n:09d}",
            "fromMe": False,
            "text": {"message": "Oi, tudo bem?"},
        }
    if roll < 0.45:
        status = {
            **base,
            "type": "MessageStatusCallback",
            "status": rng.choice(STATUSES),
            "ids": [f"M{max(n - rng.randint(1, 50), 0):09d}"],
            "phone": number.as_sent(rng),
            "isGroup": False,
        }
        if roll < 0.13:  # a status from a group: the member is the number
            status["phone"] = f"120363{rng.randint(0, 10**12 - 1):012d}-group"
            status["participant"] = number.as_sent(rng)
            status["isGroup"] = True
        elif roll < 0.16:  # a contact known only by LID
            status["phone"] = f"{rng.randint(10**14, 10**15 - 1)}@lid"
        return status
    sent = {
        **base,
        "type": "DeliveryCallback",
        "phone": number.as_sent(rng),
        "messageId": f"M{n:09d}",
        "zaapId": f"Z{n:09d}",
    }
    if rng.random() < 0.03:
        sent["error"], code = rng.choice(ERRORS)
        if code:
            sent["errorCode"] = code
    return sent


def build_database(args: argparse.Namespace, numbers: list[Number], busy: list[Number]) -> None:
    """Store ``args.rows`` callbacks, oldest first, spread over the last 90 days."""
    rng = random.Random(args.seed + 1)
    busy_share = len(busy) * BUSY_ROWS / args.rows
    start = datetime.now(UTC) - timedelta(days=90)
    step = timedelta(days=90) / args.rows
    began = time.perf_counter()
    for first in range(0, args.rows, BUILD_CHUNK):
        rows, status_rows, stored = [], [], []
        for n in range(first, min(first + BUILD_CHUNK, args.rows)):
            number = rng.choice(busy) if rng.random() < busy_share else rng.choice(numbers)
            moment = start + step * n
            callback = parse(json.dumps(make_callback(n, number, rng, moment)).encode())
            rows.append(
                {**callback.columns(), "id": n + 1, "received_at": moment, "receive_count": 1}
            )
            status_rows += [
                {"delivery_id": n + 1, "message_id": message_id}
                for message_id in callback.status_ids
            ]
            stored.append((callback, n + 1, moment))
        with db.writing() as session:
            connection = session.connection()
            connection.execute(insert(Delivery.__table__), rows)
            if status_rows:
                connection.execute(insert(StatusMessageId.__table__), status_rows)
            # The messages as the webhook's own write would keep them.
            message_store.record(session, stored)
        done = min(first + BUILD_CHUNK, args.rows)
        rate = done / (time.perf_counter() - began)
        print(f"\r  stored {done:,} of {args.rows:,} ({rate:,.0f}/s)", end="", flush=True)
    print()
    with db.engine.begin() as connection:
        connection.execute(text("ANALYZE"))


# --- timing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Milliseconds of one case's runs."""

    label: str
    samples: list[float]
    goal_ms: float | None = None

    def percentile(self, share: float) -> float:
        """The ``share`` percentile (nearest rank)."""
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]

    @property
    def met(self) -> bool | None:
        """Whether p99 is under the goal (None when the case has none)."""
        return None if self.goal_ms is None else self.percentile(0.99) < self.goal_ms


def timed(label: str, runs: list[Callable[[], object]], goal_ms: float | None) -> Timing:
    """Run each callable once (after one untimed warm-up run) and note its milliseconds."""
    runs[0]()
    samples = []
    for run in runs:
        began = time.perf_counter()
        run()
        samples.append((time.perf_counter() - began) * 1000)
    return Timing(label, samples, goal_ms)


@dataclass(frozen=True)
class Case:
    """One kind of search: its label and, per query, the API parameters."""

    label: str
    params: list[dict[str, str]]


def make_cases(args: argparse.Namespace, numbers: list[Number], busy: list[Number]) -> list[Case]:
    """The searches to time, the same for the database and the API."""
    rng = random.Random(args.seed + 2)

    def picks(pool: list[Number]) -> list[Number]:
        # Each case its own numbers: one case must not find the pages another has cached.
        return [rng.choice(pool) for _ in range(args.queries)]

    busy_picks = picks(busy)
    page_50 = {number: page_cursor(number, BUSY_PAGE) for number in busy}
    return [
        Case("whole number, any format", [{"phone": n.as_typed(rng)} for n in picks(numbers)]),
        Case("last 8 digits", [{"phone": n.subscriber[-8:]} for n in picks(numbers)]),
        Case("busy number, page 1", [{"phone": n.as_typed(rng)} for n in busy_picks]),
        Case(
            f"busy number, page {BUSY_PAGE}",
            [{"phone": n.as_typed(rng), "before": str(page_50[n])} for n in busy_picks],
        ),
    ]


def page_cursor(number: Number, page: int) -> int:
    """The ``before`` cursor that opens page ``page`` of a number's callbacks."""
    filters = Filters(phone=parse_query(f"{number.area}{number.subscriber}"))
    before = None
    with db.reading() as session:
        for _ in range(page - 1):
            before = deliveries.search(session, filters, PAGE, before=before).older
            if before is None:
                raise BenchError(f"a busy number has fewer than {page} pages")
    return before


def database_timings(cases: list[Case]) -> list[Timing]:
    """Each case through ``deliveries.search`` on one session, as a request would do it."""

    def run(params: dict[str, str]) -> Callable[[], object]:
        def search():
            with db.reading() as session:
                filters = Filters(phone=parse_query(params["phone"]))
                before = int(params["before"]) if "before" in params else None
                page = deliveries.search(session, filters, PAGE, before=before)
                if not page.items:
                    raise BenchError(f"no match for {params}: the data is wrong")

        return search

    return [timed(case.label, [run(p) for p in case.params], GOAL_DB_P99_MS) for case in cases]


def message_timings(args: argparse.Namespace, numbers: list[Number]) -> list[Timing]:
    """A number's messages, and one message by its messageId and by its zaapId."""
    rng = random.Random(args.seed + 3)

    def run(filters: MessageFilters, limit: int) -> Callable[[], object]:
        def search():
            with db.reading() as session:
                if not message_queries.search(session, filters, limit):
                    raise BenchError(f"no message for {filters}: the data is wrong")

        return search

    # Random sent messages of the database: their numbers, typed in any format, and their
    # ids, each with the zaapId its DeliveryCallback gave.
    with db.reading() as session:
        sample = session.execute(
            select(Message.phone, Message.message_id, Message.zaap_id)
            .where(Message.zaap_id.is_not(None))
            .order_by(func.random())
            .limit(args.queries * 2)
        ).all()
    by_key = {phones.stored_key(f"55{n.area}{n.subscriber}"): n for n in numbers}
    typed = [by_key[key] for row in sample if (key := phones.stored_key(row.phone)) in by_key]
    by_phone = [
        run(MessageFilters(phone=parse_query(n.as_typed(rng))), PAGE) for n in typed[: args.queries]
    ]
    known = {row.message_id: row.zaap_id for row in sample[: args.queries]}
    return [
        timed("messages of a whole number", by_phone, GOAL_DB_P99_MS),
        timed(
            "one message by messageId",
            [run(MessageFilters(message_id=m), 1) for m in known],
            GOAL_DB_P99_MS,
        ),
        timed(
            "one message by zaapId",
            [run(MessageFilters(message_id=z), 1) for z in known.values()],
            GOAL_DB_P99_MS,
        ),
    ]


def database_baselines(numbers: list[Number]) -> list[Timing]:
    """A primary-key lookup and a leading-wildcard LIKE scan on the same database."""
    with db.reading() as session:
        top = session.scalar(select(func.max(Delivery.id)))
    rng = random.Random(3)

    def lookup():
        with db.reading() as session:
            session.get(Delivery, rng.randint(1, top))
            session.expunge_all()

    def scan(number: Number) -> Callable[[], object]:
        query = (
            select(Delivery.id)
            .where(Delivery.phone.like(f"%{number.subscriber[-8:]}"))
            .order_by(Delivery.id.desc())
            .limit(PAGE)
        )

        def run():
            with db.reading() as session:
                session.execute(query).all()

        return run

    return [
        timed("baseline: primary-key lookup", [lookup] * 200, None),
        timed(
            "baseline: LIKE '%8 digits' scan",
            [scan(n) for n in random.Random(4).sample(numbers, LIKE_SCANS)],
            None,
        ),
    ]


def api_timings(base_url: str, session, cases: list[Case]) -> list[Timing]:
    """Each case as ``GET /api/deliveries``, then ``GET /healthz`` as the baseline."""

    def get(path: str, params: dict[str, str]) -> Callable[[], object]:
        def run():
            answer = session.get(f"{base_url}{path}", params=params, timeout=REQUEST_TIMEOUT_S)
            if answer.status_code != 200:
                raise BenchError(f"GET {path} {params} gave {answer.status_code}: {answer.text}")
            return answer

        return run

    timings = [
        timed(
            case.label,
            [get("/api/deliveries", {**p, "limit": str(PAGE)}) for p in case.params],
            GOAL_API_P99_MS,
        )
        for case in cases
    ]
    queries = len(cases[0].params)
    timings.append(timed("baseline: GET /healthz", [get("/healthz", {})] * queries, None))
    return timings


@dataclass(frozen=True)
class Export:
    """One CSV export over HTTP."""

    rows: int
    seconds: float
    peak_rss: int
    rss_before: int


def peak_rss(pids: list[int]) -> dict[int, int]:
    """Each process's peak resident set since its last reset (VmHWM), in bytes."""
    return {pid: (proc_number(f"/proc/{pid}/status", "VmHWM") or 0) * 1024 for pid in pids}


def reset_peak_rss(pids: list[int]) -> None:
    """Start each process's VmHWM afresh from its current RSS (see proc(5), clear_refs)."""
    # Otherwise the peak would be the 64 MiB argon2 hash of the sign-in, not the export.
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def export_timing(base_url: str, session, server_pid: int) -> Export:
    """Download the CSV of every ReceivedCallback; note the time and the peak RSS."""
    processes = [server_pid, *children_of(server_pid)]
    reset_peak_rss(processes)
    before = peak_rss(processes)
    began = time.perf_counter()
    answer = session.get(
        f"{base_url}/search/export.csv",
        params={"type": EXPORT_TYPE},
        stream=True,
        timeout=REQUEST_TIMEOUT_S,
    )
    if answer.status_code != 200:
        raise BenchError(f"the export gave {answer.status_code}: {answer.text[:200]}")
    lines = sum(chunk.count(b"\n") for chunk in answer.iter_content(64 * 1024))
    seconds = time.perf_counter() - began
    after = peak_rss(processes)
    # The process whose peak grew most is the worker that streamed the file.
    server = max(processes, key=lambda pid: after[pid] - before[pid])
    return Export(lines - 1, seconds, peak_rss=after[server], rss_before=before[server])


# --- report -------------------------------------------------------------------------------


def print_table(title: str, timings: list[Timing]) -> None:
    """One table of p50/p99/max per case."""
    print(f"\n{title}")
    print(f"  {'case':<36} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}   goal")
    for timing in timings:
        goal = ""
        if timing.goal_ms is not None:
            goal = f"p99 < {timing.goal_ms:g} ms {'MET' if timing.met else 'NOT MET'}"
        print(
            f"  {timing.label:<36} {statistics.median(timing.samples):>9.3f}"
            f" {timing.percentile(0.99):>9.3f} {max(timing.samples):>9.3f}   {goal}"
        )


def run(args: argparse.Namespace, workdir: Path) -> None:
    """Build (or reuse) the database, then time the searches in process and over HTTP."""
    data_dir = args.data_dir or workdir / "data"
    token = secrets.token_urlsafe(32)
    env = server_env(data_dir, token)
    app = create_app({"DATA_DIR": str(data_dir), "WEBHOOK_TOKEN": token})
    rng = random.Random(args.seed)
    numbers = make_numbers(rng, args.numbers)
    busy = rng.sample(numbers, args.busy)
    with app.app_context(), db.reading() as session:
        stored = session.scalar(select(func.count()).select_from(Delivery))
    if stored == 0:
        print(f"building {args.rows:,} callbacks in {data_dir}...", flush=True)
        build_database(args, numbers, busy)
    elif stored != args.rows:
        raise BenchError(f"{data_dir} holds {stored:,} callbacks, not {args.rows:,}")
    else:
        print(f"reusing the {stored:,} callbacks in {data_dir}", flush=True)

    cases = make_cases(args, numbers, busy)
    # As the server does before it forks: the long-lived objects (here the 100,000 numbers)
    # are left out of garbage collection, which would otherwise walk them again and again.
    gc.freeze()
    print(f"timing {args.queries} queries per case in process...", flush=True)
    db_timings = database_timings(cases) + database_baselines(numbers)
    message_search = message_timings(args, numbers)
    db.engine.dispose()
    print(f"\n{args.rows:,} callbacks, {args.numbers:,} numbers, {args.busy} busy numbers")
    print_table("database (deliveries.search, 50 rows a page)", db_timings)
    scan, lookup = db_timings[-1], db_timings[-2]
    print(
        f"  an indexed search p99 is {scan.percentile(0.5) / db_timings[0].percentile(0.99):,.0f}x"
        f" faster than the LIKE scan's median; a key lookup's median is"
        f" {statistics.median(lookup.samples):.3f} ms"
    )

    print_table("database (messages.queries.search)", message_search)

    # A new admin each run: a reused data dir already holds the previous runs' admins.
    username, password = f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    create_admin(env, password, username)
    print("starting zapi-dashboard serve...", flush=True)
    with running_server(args.workers, args.threads, workdir, env) as server:
        common.wait_until_serving(server)
        session = sign_in(server.base_url, password, username)
        print(f"timing {args.queries} requests per case over HTTP...", flush=True)
        http_timings = api_timings(server.base_url, session, cases)
        print("exporting...", flush=True)
        export = export_timing(server.base_url, session, server.process.pid)
        session.close()

    print_table("HTTP (GET /api/deliveries?limit=50, signed-in session)", http_timings)
    export_met = export.seconds < GOAL_EXPORT_S and export.peak_rss / MB < GOAL_EXPORT_RSS_MB
    print(
        f"\nexport of {export.rows:,} rows: {export.seconds:.2f} s,"
        f" peak RSS of the worker that served it {export.peak_rss / MB:.1f} MB"
        f" ({export.rss_before / MB:.1f} MB before)"
        f" (goal < {GOAL_EXPORT_S:g} s and < {GOAL_EXPORT_RSS_MB:g} MB:"
        f" {'MET' if export_met else 'NOT MET'})"
    )
    timings = db_timings + message_search + http_timings
    goals = [t.met for t in timings if t.met is not None] + [export_met]
    print(f"all goals: {'MET' if all(goals) else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(common.main("search", parse_args, run))
