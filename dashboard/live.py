"""Live fan-out: this process's sockets, fed by one poller thread on the row id cursor.

Every process (gunicorn worker, app instance) runs its own poller, so a row stored by
any of them reaches every socket. The process that stores a row wakes its poller at once;
the others learn of new rows from the database itself: on SQLite by watching the file's
write-ahead log change (a stat call, no query), on PostgreSQL by LISTEN/NOTIFY
(dashboard/notifications.py).
"""

import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import deliveries, metrics, notifications
from .accounts import users as accounts
from .database import Database
from .live_io import LiveSockets, text_frame
from .logs import database_reason
from .messages import queries, verdict
from .models import Delivery, iso_utc

log = logging.getLogger(__name__)

# How often other processes' commits are looked for: a stat call on SQLite. Shorter
# costs more idle CPU with sockets open; longer delays rows stored by other workers.
SQLITE_WATCH_SECONDS = 0.05
# While its notifications are down, PostgreSQL is polled this often; the id index makes
# the query cheap.
POSTGRES_POLL_SECONDS = 0.2
# On PostgreSQL an id allotted earlier can commit later; a gap in the ids is waited for
# this long before the cursor moves past it for good.
LATE_COMMIT_SECONDS = 10.0
BATCH = 500
# A disabled user's or ended session's sockets close within this many seconds.
SESSION_CHECK_SECONDS = 3.0
FALLBACK_READ_SECONDS = 1.0
# When every commit wakes the poller (serve's single worker, or PostgreSQL's notifications
# up), the read in case of a row stored elsewhere comes this often: on a 1-2 core VPS,
# every wake-up of an idle server costs far more than its few queries suggest.
IDLE_READ_SECONDS = 5.0
GOING_AWAY, POLICY_VIOLATION = 1001, 1008
# What a browser's location.origin can be: a scheme, a host (IDNs come as punycode) and a
# port; anything more is no origin.
_PLAIN_ORIGIN = re.compile(
    r"https?://(?:[a-z0-9.-]{1,253}|\[[0-9a-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?",
    re.IGNORECASE | re.ASCII,
)


@dataclass(frozen=True)
class Refusal:
    """Why a socket is refused before its handshake, and the HTTP status it gets."""

    reason: str  # "origin" (the page is not of this site, as we see it) or "full"
    status: int


FOREIGN_ORIGIN = Refusal("origin", 403)
FULL = Refusal("full", 503)


def plain_origin(text: str | None) -> str | None:
    """``text`` in lower case if it is a plain http(s) origin (no path, query, user), else None."""
    found = _PLAIN_ORIGIN.fullmatch(text or "")
    if found is None or int(found["port"] or 0) > 65535:
        return None
    return found[0].lower()


def refusal(
    origin: str | None, accepted: Collection[str], open_sockets: int, limit: int
) -> Refusal | None:
    """Why a socket from a page at ``origin`` would be refused now, or None if it would open.

    ``accepted`` are the origins this site's pages have; ``open_sockets`` of at most ``limit``
    are in use in this process.
    """
    if plain_origin(origin) not in accepted:
        return FOREIGN_ORIGIN
    if open_sockets >= limit:
        return FULL
    return None


class Outgoing(NamedTuple):
    """A delivery's frame for every socket: its row id, its text and its encoded bytes."""

    id: int
    text: str
    wire: bytes


class Subscriber:
    """One open socket's inbox: frames to send, or a close code to leave with.

    ``ended`` is set once the socket is closed.
    """

    def __init__(self, session_token: str | None) -> None:
        self.session_token = session_token
        self.ended = threading.Event()
        self.inbox: queue.SimpleQueue[Outgoing | int] = queue.SimpleQueue()


def event_frame(name: str, data: dict) -> str:
    """One text frame of the live protocol: ``{"event": name, "data": data}``."""
    return json.dumps({"event": name, "data": data})


def delivery_frames(session: Session, rows: list[Delivery]) -> list[tuple[int, str]]:
    """The ``delivery`` frame of each row, by id, with its message as it stands; one query."""
    news = queries.messages_of(session, rows)
    frames = []
    for row in rows:
        about = news.get(row.id)
        data = {
            **deliveries.to_json(row),
            "messageState": about.message.state if about else None,
            "message": message_json(about) if about else None,
        }
        frames.append((row.id, event_frame("delivery", data)))
    return frames


def message_json(news: queries.News) -> dict:
    """What the feed draws of a message: its state, phone, words, failure and latest news."""
    return {
        **verdict.summary_json(news.message),
        # When it first failed: the feed counts the failures of the last 24 hours.
        "failedAt": iso_utc(news.message.failed_at) if news.message.failed_at else None,
        # The latest callback about it: a frame carrying an older one is older news.
        "latestDeliveryId": news.message.last_delivery_id,
        "latestAt": iso_utc(news.at),
    }


class Cursor:
    """The highest id below which every row has been seen, tolerant of late commits."""

    def __init__(self, start: int) -> None:
        self.low = start
        self.high = start  # the highest id emitted
        self._seen: set[int] = set()
        self._gap_since: dict[int, float] = {}

    def is_new(self, row_id: int) -> bool:
        """Whether ``row_id`` has not been emitted yet."""
        return row_id > self.low and row_id not in self._seen

    def mark(self, row_id: int) -> None:
        """Remember that ``row_id`` was emitted."""
        self._seen.add(row_id)
        self.high = max(self.high, row_id)

    def advance(self, now: float) -> None:
        """Move ``low`` over emitted ids, and over gaps that waited long enough."""
        while self._seen:
            following = self.low + 1
            if following in self._seen:
                self._seen.discard(following)
                self._gap_since.pop(following, None)
                self.low = following
                continue
            first_seen = self._gap_since.setdefault(following, now)
            if now - first_seen < LATE_COMMIT_SECONDS:
                return
            self._gap_since.pop(following, None)
            self.low = following  # never committed (rolled back or a skipped sequence value)


class Hub:
    """This process's sockets and the poller thread that feeds them."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._cursor: Cursor | None = None
        self._wake = threading.Event()
        self._owner_pid: int | None = None
        self._listener: notifications.Listener | None = None
        self._sockets = LiveSockets()
        self._watch_others = True

    @property
    def count(self) -> int:
        """How many sockets this process has open."""
        # The socket thread unsubscribes a socket as soon as it has closed.
        with self._lock:
            return len(self._subscribers)

    def subscribe(self, session_token: str | None = None) -> Subscriber:
        """Register a socket; every row committed after this call will reach its inbox.

        The socket is told to close when ``session_token``'s session ends.
        """
        subscriber = Subscriber(session_token)
        with self._lock:
            if self._cursor is None:
                # Rows up to here are the socket's catch-up; the poller takes the rest.
                with self._db.reading() as session:
                    self._cursor = Cursor(deliveries.newest_id(session))
            self._subscribers.add(subscriber)
            metrics.set_live_sockets(len(self._subscribers))
            if self._owner_pid != os.getpid():
                # Threads do not survive fork: each worker starts its own poller.
                self._owner_pid = os.getpid()
                threading.Thread(target=self._run, name="live-poller", daemon=True).start()
                if not self._db.is_sqlite:
                    self._listener = notifications.Listener(self._db.engine, self.notify)
                    self._listener.start()
        self._wake.set()
        return subscriber

    def adopt(self, subscriber: Subscriber, ws, already_sent: set[int]) -> None:
        """Let this process's socket thread serve ``ws`` from now on, until it closes.

        Its inbox's frames go out but those of ``already_sent`` (the catch-up's), and
        ``subscriber.ended`` is set once the socket is closed.
        """
        self._sockets.adopt(ws, subscriber.inbox, already_sent, lambda: self._ended(subscriber))

    def _ended(self, subscriber: Subscriber) -> None:
        subscriber.ended.set()
        self.unsubscribe(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a socket that closed; the last one stops the polling."""
        with self._lock:
            self._subscribers.discard(subscriber)
            metrics.set_live_sockets(len(self._subscribers))
            if not self._subscribers:
                self._cursor = None

    def announce(self, session: Session) -> None:
        """Make ``session``'s commit wake the live feeds of every other instance."""
        if not self._db.is_sqlite:
            notifications.announce(session)

    def notify(self) -> None:
        """A row was just committed by this process: read it now, if anyone listens."""
        if self._subscribers:
            self._wake.set()

    def close_all(self, code: int) -> None:
        """Ask every socket of this process to close with ``code`` (e.g. 1001 at shutdown)."""
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.inbox.put(code)
        self._sockets.deliver()

    def wait_closed(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the sockets asked to close to be closed."""
        self._sockets.stop(timeout)

    def _run(self) -> None:
        changed = self._change_detector()
        next_session_check = 0.0
        next_read = 0.0
        while True:
            if not self._subscribers:
                self._wake.clear()
                # Checked again after clearing: a subscribe() in between must not be lost.
                if not self._subscribers:
                    self._wake.wait()  # no socket open: no polling at all
            watch = self._watch_interval()
            due = min(next_session_check, next_read) - time.monotonic()
            woken = self._wake.wait(max(0.0, due if watch is None else min(watch, due)))
            self._wake.clear()
            try:
                now = time.monotonic()
                # One query for all of this process's sockets, instead of one per socket.
                if now >= next_session_check:
                    self._close_ended_sessions()
                    next_session_check = now + SESSION_CHECK_SECONDS
                # A read now and then even if nothing seemed to change: coarse file
                # timestamps can hide a commit that left the WAL at the same size, and a
                # command on the same data dir stores rows without telling this process.
                if woken or (watch is not None and changed()) or now >= next_read:
                    self._emit()
                    next_read = now + (FALLBACK_READ_SECONDS if watch else IDLE_READ_SECONDS)
            except SQLAlchemyError as exc:
                log.warning("Live feed could not read the database: %s", database_reason(exc))
                metrics.count_database_error("live")
                time.sleep(1)

    def watch_other_processes(self, watch: bool) -> None:
        """Whether other processes may store rows on SQLite (another worker, say).

        Serve's single worker stores every row itself and wakes its poller at each commit:
        it needs no watch on the file, and its poller sleeps until woken, or until the
        session check (every 3 s) or the read in case of a row from elsewhere (a command
        on the same data dir; every 5 s) is due, instead of waking 20 times a second.
        """
        self._watch_others = watch

    def _watch_interval(self) -> float | None:
        """How often to look for commits the poller is not told of; None: it is told of all."""
        if self._db.is_sqlite:
            return SQLITE_WATCH_SECONDS if self._watch_others else None
        listening = self._listener is not None and self._listener.connected
        return None if listening else POSTGRES_POLL_SECONDS

    def _close_ended_sessions(self) -> None:
        with self._lock:
            subscribers = [s for s in self._subscribers if s.session_token]
        if not subscribers:
            return
        with self._db.reading() as session:
            alive = accounts.live_session_tokens(
                session, {subscriber.session_token for subscriber in subscribers}
            )
        ended = [s for s in subscribers if s.session_token not in alive]
        for subscriber in ended:
            subscriber.inbox.put(POLICY_VIOLATION)
        if ended:  # otherwise nothing for the socket thread to do: let it sleep
            self._sockets.deliver()

    def _emit(self) -> None:
        cursor = self._cursor
        if cursor is None:
            return
        with self._db.reading() as session:
            # New rows past the highest id sent, and, while a gap is open, only the ids
            # below it that committed late: rows already sent are never read again.
            fresh = deliveries.newer_than(session, cursor.high, BATCH)
            late_ids = [
                row_id
                for row_id in deliveries.ids_between(session, cursor.low, cursor.high)
                if cursor.is_new(row_id)
            ]
            late = deliveries.by_ids(session, late_ids) if late_ids else []
            frames = delivery_frames(
                session, late + [row for row in fresh if cursor.is_new(row.id)]
            )
        for row_id, _ in frames:
            cursor.mark(row_id)
        cursor.advance(time.monotonic())
        with self._lock:
            subscribers = list(self._subscribers)
        # Encoded once here, the same bytes go to every socket.
        outgoing = [Outgoing(row_id, text, text_frame(text)) for row_id, text in frames]
        for frame in outgoing:
            for subscriber in subscribers:
                subscriber.inbox.put(frame)
        if outgoing:
            self._sockets.deliver()
        if len(fresh) == BATCH:
            self._wake.set()  # more are waiting

    def _change_detector(self) -> Callable[[], bool]:
        """A cheap check for commits made by other processes, asked when one is watched."""
        if not self._db.is_sqlite:
            # Only asked while notifications are down (_watch_interval): then every look
            # is a read.
            return lambda: True
        database = Path(self._db.engine.url.database)
        watched = (database, database.with_name(database.name + "-wal"))
        last: list = []

        def changed() -> bool:
            state = []
            for path in watched:
                try:
                    info = path.stat()
                    state.append((info.st_mtime_ns, info.st_size))
                except FileNotFoundError:
                    state.append(None)
            if state == last:
                return False
            last[:] = state
            return True

        return changed
