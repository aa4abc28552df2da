"""Cross-instance wake-ups on PostgreSQL: a NOTIFY in each write, a LISTEN per process.

A row stored by one app instance must reach the live feeds of every other instance at
once. Polling the table for that costs a query every few hundred milliseconds per
process and still adds that delay; instead each batch of callbacks sends a notification
inside its own transaction (PostgreSQL delivers it at commit, never for a rollback), and
each process keeps one connection listening for it.
"""

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from .logs import database_reason

log = logging.getLogger(__name__)

CHANNEL = "zapi_dashboard_deliveries"
# How long the listener waits for a notification before it looks at its connection again.
LISTEN_TIMEOUT_SECONDS = 5.0
# After losing the database, the listener tries again this often (the feed polls meanwhile).
RECONNECT_SECONDS = 1.0


def announce(session: Session) -> None:
    """Tell every listening process, at this transaction's commit, that rows were stored."""
    # Notifications of one transaction with the same payload are folded into one.
    session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class Listener:
    """One connection per process that LISTENs and calls ``on_notify`` for each commit."""

    def __init__(self, engine: Engine, on_notify: Callable[[], None]) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._on_notify = on_notify
        self._connected = threading.Event()

    @property
    def connected(self) -> bool:
        """Whether notifications are arriving; while not, the caller must poll."""
        return self._connected.is_set()

    def start(self) -> None:
        """Listen from a daemon thread of this process for as long as it lives."""
        threading.Thread(target=self._run, name="live-listener", daemon=True).start()

    def _run(self) -> None:
        # Imported here: psycopg is installed only with the PostgreSQL extra.
        import psycopg

        while True:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._connected.set()
                    # A commit made while the connection was down was missed: read now.
                    self._on_notify()
                    while True:
                        for _ in connection.notifies(timeout=LISTEN_TIMEOUT_SECONDS):
                            self._on_notify()
            except psycopg.Error as exc:
                if self._connected.is_set():
                    log.warning(
                        "Live feed lost its PostgreSQL notifications: %s", database_reason(exc)
                    )
                self._connected.clear()
            time.sleep(RECONNECT_SECONDS)
