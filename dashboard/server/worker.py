"""The server's worker: gunicorn's threaded worker, handing a thread only whole requests.

gunicorn's gthread worker gives each new or readable connection to a pool thread, which
then reads the request with blocking calls: a client that sends its headers or body a
byte at a time, or stops half-way, holds that thread for as long as it likes, and as
many such clients as there are threads stop the webhook. Here the worker's poller reads
each request itself, without blocking (dashboard/server/intake.py says when one is
whole), and only then gives it to a thread, whose parser finds every byte already there.
"""

import contextlib
import json
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from functools import partial

from flask_babel import force_locale, gettext
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from ..config import DEFAULTS
from ..i18n import DEFAULT_LANGUAGE, LANGUAGES, language_for
from ..translatable import N_
from .environ import DECLARED_BODY, KEEP_CONNECTION
from .intake import Intake, Step

# Read from a connection at once, as gunicorn's own parser does for a request's head.
RECV_BYTES = 65536
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
TIMED_OUT_MESSAGE = N_("The request did not arrive whole in time; send it again.")
# How often deadlines are looked at: a 408 comes at most this late.
SCAN_SECONDS = 0.25
# How long a stopping worker waits for its live sockets to close (each client has 2 s to
# answer the close frame).
CLOSE_SECONDS = 3.0

# What the poller found out about the request a pool thread is serving, for the app, and
# whether the app keeps its connection.
_serving = threading.local()
# What handle() returns for a connection the app kept: not the worker's to close any more.
_KEPT = object()


@dataclass
class _Waiting:
    """A connection in the intake: its request so far, and when it must be whole."""

    intake: Intake
    deadline: float


class DashboardWorker(ThreadWorker):
    """gunicorn's threaded worker: whole requests to threads, live sockets closed with 1001.

    Sockets would otherwise hold the worker until the graceful timeout; closed with
    "going away", browsers reconnect at once to the next worker.
    """

    _closing = False

    def init_process(self):
        """Set up the request intake, then start as gunicorn does (which runs the worker)."""
        self._waiting: dict[TConn, _Waiting] = {}
        self._declared: dict[TConn, int] = {}  # the oversize body a request declares
        self._next_scan = 0.0
        super().init_process()

    def load_wsgi(self):
        """Load the app as gunicorn does, and read the limits the intake applies."""
        super().load_wsgi()
        self.flask_app = self.wsgi
        # A bare app (a benchmark's) has no such settings: it gets the dashboard's defaults.
        config = {**DEFAULTS, **self.flask_app.config}
        self._body_limit = config["MAX_WEBHOOK_BODY"]
        self._request_seconds = config["REQUEST_SECONDS"]
        self._timed_out = _timed_out_answers(self.flask_app)
        self.wsgi = partial(_serve_with_environ, self.flask_app)

    def handle_exit(self, sig, frame):
        """Close this worker's sockets, then stop as gunicorn does."""
        from ..extensions import hub
        from ..live import GOING_AWAY

        # A signal handler must not take the hub's lock: a second SIGTERM (from the master
        # and from a process-group kill) would interrupt it and wait on itself forever.
        if not self._closing:
            self._closing = True
            threading.Thread(target=hub.close_all, args=(GOING_AWAY,), daemon=True).start()
        super().handle_exit(sig, frame)

    def run(self):
        """Serve as gunicorn does, with this worker's daily pruner running beside it."""
        from ..extensions import db, hub
        from ..retention import Pruner

        config = self.flask_app.config
        # With one worker, every row this server stores is its own: nothing to watch for.
        hub.watch_other_processes(self.cfg.workers > 1)
        # An app without retention settings (say, a benchmark's bare app) prunes nothing.
        days = config.get("RETENTION_DAYS", 0)
        # Logged through gunicorn's error log, so the pruner's reports reach the console.
        pruner = Pruner(db, days, config.get("PRUNE_CHECK_SECONDS", 0), self.log.error_log)
        pruner.start()
        try:
            super().run()
        finally:
            pruner.stop()
            # Live sockets are not the worker's connections: their close frames must be
            # out before the process ends.
            hub.wait_closed(CLOSE_SECONDS)

    # --- the intake: runs in the poller's thread -------------------------------------------

    def enqueue_req(self, conn):
        """Wait in the poller until ``conn``'s next request is whole, then serve it."""
        if self.cfg.is_ssl:
            super().enqueue_req(conn)  # TLS is the proxy's job; gunicorn's way then
            return
        deadline = time.monotonic() + self._request_seconds
        self._waiting[conn] = _Waiting(Intake(self._body_limit), deadline)
        # A kept-alive connection is non-blocking already; each call would be a system
        # call, and a release of the GIL, in the loop every request goes through.
        if conn.sock.gettimeout() != 0.0:
            conn.sock.setblocking(False)
        # Bytes read past the previous request (a pipelining client) come first.
        leftover = conn.parser.unreader.take_buffered() if conn.parser else b""
        if leftover and self._advance(conn, leftover):
            return
        # A kept-alive connection is here because it became readable: read before waiting.
        if self._receive(conn):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn, _client):
        self._receive(conn)

    def _receive(self, conn) -> bool:
        """Read what ``conn`` has sent and act on it; True once it left the intake."""
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._drop(conn)
            return True
        if data:
            return self._advance(conn, data)
        if self._waiting[conn].intake.buffered:
            self._hand_over(conn)  # ended part-way: the parser and the app say what is missing
        else:
            self._drop(conn)  # closed between requests: nothing to answer
        return True

    def _advance(self, conn, data: bytes) -> bool:
        """Feed ``data`` to ``conn``'s intake and act on it; True once it left the intake."""
        reading = self._waiting[conn].intake.feed(data)
        if reading.step is Step.MORE:
            return False
        if reading.step is Step.CONTINUE:
            _send_quietly(conn.sock, CONTINUE)
            return False
        if reading.step is Step.OVERSIZE:
            # Nothing more is read from this connection: the thread serving the refusal
            # must not wait for a body it will not keep.
            self._declared[conn] = reading.declared
            _stop_reading(conn.sock)
        self._hand_over(conn)
        return True

    def _leave_intake(self, conn) -> _Waiting:
        waiting = self._waiting.pop(conn)
        # Only those that had to wait for more bytes were ever put on the poller.
        if conn.sock in self.poller.get_map():
            self.poller.unregister(conn.sock)
        return waiting

    def _hand_over(self, conn):
        waiting = self._leave_intake(conn)
        conn.init()  # its parser; the thread then finds the whole request in its buffer
        conn.parser.unreader.unread(bytes(waiting.intake.buffered))
        conn.data_ready = True
        super().enqueue_req(conn)

    def _drop(self, conn, answer: bytes = b""):
        waiting = self._leave_intake(conn)
        if answer and waiting.intake.buffered:
            _send_quietly(conn.sock, answer)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        """Close connections whose request did not arrive whole in time (408), as gunicorn's.

        A stopping worker closes at once those that sent nothing of a next request (a
        browser opens spare connections ahead of need), and gives the others as long as
        gunicorn gives its kept-alive ones.
        """
        super().murder_pending()
        now = time.monotonic()
        # The poller's loop runs on every event: under load, thousands of times a second.
        if now < self._next_scan and self.alive:
            return
        self._next_scan = now + SCAN_SECONDS
        if not self.alive:
            for conn, waiting in list(self._waiting.items()):
                if not waiting.intake.buffered:
                    self._drop(conn)
                else:
                    waiting.deadline = min(waiting.deadline, now + STOP_KEEPALIVE_LINGER)
        for conn, waiting in list(self._waiting.items()):
            if waiting.deadline <= now:
                self._drop(conn, self._timed_out_answer(waiting.intake))

    def _timed_out_answer(self, intake: Intake) -> bytes:
        """The 408, in the language the client's head asked for, as the app would choose."""
        asked = intake.header(b"accept-language")
        accepted = parse_accept_header(asked.decode("latin-1") if asked else None, LanguageAccept)
        return self._timed_out.get(language_for(accepted), self._timed_out[DEFAULT_LANGUAGE])

    # --- in a pool thread ------------------------------------------------------------------

    def handle(self, conn):
        """Serve ``conn``'s request, telling the app of a body declared over the limit."""
        _serving.declared_body = self._declared.pop(conn, None)
        _serving.kept = False
        result = super().handle(conn)
        return _KEPT if _serving.kept else result

    def finish_request(self, conn, fs):
        """After a request, as gunicorn does; a connection the app kept is left to it."""
        if not fs.cancelled() and fs.exception() is None and fs.result() is _KEPT:
            self.nr_conns -= 1  # the live feed's socket thread owns and closes it now
            return
        super().finish_request(conn, fs)


def _serve_with_environ(app, environ, start_response):
    declared = getattr(_serving, "declared_body", None)
    if declared is not None:
        environ[DECLARED_BODY] = declared
    environ[KEEP_CONNECTION] = _keep_connection
    return app(environ, start_response)


def _keep_connection() -> None:
    _serving.kept = True


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send a short answer without waiting; a client that is gone or full just misses it."""
    with contextlib.suppress(OSError):
        sock.send(data)


def _stop_reading(sock: socket.socket) -> None:
    # A client already gone (ENOTCONN, or any other refusal) has nothing left to read:
    # the poller, which serves every connection, must not fail with it.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)


def _timed_out_answers(app) -> dict[str, bytes]:
    """The whole 408 answer in each language, written once: no app runs for it."""
    answers = {}
    for language in LANGUAGES:
        message = _translated(app, TIMED_OUT_MESSAGE, language)
        body = json.dumps({"error": message}).encode()
        answers[language] = (
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
    return answers


def _translated(app, message: str, language: str) -> str:
    # A bare app (a benchmark's) has no catalogs: its clients get the English text.
    if "babel" not in app.extensions:
        return message
    with app.app_context(), force_locale(language):
        return gettext(message)
