"""One thread serving every live socket of this process: frames out, pings, client frames, closes.

A socket's request thread shakes hands and sends the catch-up, then hands the socket to
this thread and is free again: under ``serve`` the worker keeps the connection open with
no thread of its own (dashboard/server/worker.py); under any other server the request
thread waits for the socket's end. Each delivery's frame is encoded once, uncompressed,
and the same bytes go to every socket: a row reaching 500 open screens costs 500
non-blocking sends from this thread, not 500 threads woken up.
"""

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason, FrameProtocol
from wsproto.utilities import ProtocolError

log = logging.getLogger(__name__)

# Every socket is pinged this often; one that has not answered the previous ping by then
# is closed (1008), so a laptop that went to sleep does not hold a place for ever.
PING_SECONDS = 25.0
# What a client may send in one message; the page sends nothing, so more is no page.
MAX_MESSAGE_BYTES = 4096
# Frames waiting for a client that reads slower than they come; past this the socket is
# dropped, and the page reconnects and catches up from the last id it has.
MAX_BACKLOG_BYTES = 4 * 1024 * 1024
# After our close frame, how long the client has to answer with its own.
CLOSING_SECONDS = 2.0
# Pings and close deadlines are looked at this often: an idle server wakes for nothing
# else, and on a small VPS each wake-up of a cold process costs milliseconds.
TIMER_SECONDS = 5.0
RECV_BYTES = 65536


def text_frame(text: str) -> bytes:
    """``text`` as one WebSocket text frame, as a server sends it (unmasked, uncompressed)."""
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text))


class Peer:
    """One socket served by the thread: its protocol state and the bytes it still owes."""

    def __init__(self, ws, inbox, skip: set[int], on_end: Callable[[], None]) -> None:
        self.ws = ws  # a simple_websocket Server: its wsproto connection and socket
        self.sock: socket.socket = ws.sock
        self.inbox = inbox  # frames (their row ``id`` and ``wire`` bytes), or a close code
        self.skip = skip  # ids the catch-up already sent
        self.on_end = on_end
        self.outbound = bytearray()
        self.pong_received = True
        self.next_ping = time.monotonic() + PING_SECONDS
        self.message_bytes = 0
        self.closing_until: float | None = None
        self.writing = False  # whether the selector waits for room to write


class LiveSockets:
    """This process's thread for live sockets, started with the first one."""

    def __init__(self) -> None:
        self._calls: deque[Callable[[], None]] = deque()
        self._owner_pid: int | None = None
        self._start_lock = threading.Lock()
        self._stopped = threading.Event()

    def adopt(self, ws, inbox, skip: set[int], on_end: Callable[[], None]) -> None:
        """Serve ``ws`` from now on: ``inbox``'s frames (but ``skip``'s ids), pings, its end.

        ``on_end`` is called once the socket is closed, from the thread.
        """
        ws.sock.setblocking(False)
        # Frames go out as they come: Nagle's algorithm would hold a frame back until the
        # client acknowledged the last one, which it may delay by up to 40 ms.
        with contextlib.suppress(OSError):  # not TCP (a Unix socket, say)
            ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # simple-websocket would otherwise send its own close frame when the request ends.
        ws.connected = False
        self._ensure_started()
        self._call(lambda: self._add(Peer(ws, inbox, skip, on_end)))

    def deliver(self) -> None:
        """New frames or close codes are in the inboxes: send them."""
        if self._owner_pid == os.getpid():
            self._call(self._drain_all)

    def stop(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every socket to be closed (say, at shutdown)."""
        if self._owner_pid == os.getpid():
            self._call(self._stop_when_empty)
            self._stopped.wait(timeout)

    # --- any thread --------------------------------------------------------------------

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._owner_pid == os.getpid():
                return
            self._selector = selectors.DefaultSelector()
            self._wake_in, self._wake_out = socket.socketpair()
            self._wake_in.setblocking(False)
            self._wake_out.setblocking(False)
            self._selector.register(self._wake_in, selectors.EVENT_READ, None)
            self._peers: dict[socket.socket, Peer] = {}
            self._stopping = False
            threading.Thread(target=self._run, name="live-sockets", daemon=True).start()
            # Threads do not survive fork: each worker starts its own. Set last, since
            # deliver() and stop() go ahead, without the lock, once it is this process's.
            self._owner_pid = os.getpid()

    def _call(self, call: Callable[[], None]) -> None:
        self._calls.append(call)
        # A full wake-up pipe already holds a wake-up: the call is not lost.
        with contextlib.suppress(BlockingIOError):
            self._wake_out.send(b"\0")

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        next_check = 0.0
        while True:
            # Pings and close deadlines are looked at every TIMER_SECONDS; idle, that is all.
            timeout = max(0.0, next_check - time.monotonic()) if self._peers else None
            for key, events in self._selector.select(timeout):
                if key.data is None:
                    self._run_calls()
                    continue
                peer = key.data
                if events & selectors.EVENT_READ:
                    self._read(peer)
                if events & selectors.EVENT_WRITE and peer.sock in self._peers:
                    self._flush(peer)
            now = time.monotonic()
            if now >= next_check:
                self._run_timers(now)
                next_check = now + TIMER_SECONDS

    def _run_calls(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_in.recv(4096):
                pass
        while self._calls:
            call = self._calls.popleft()
            try:
                call()
            except Exception:  # one socket's fault must not stop every other socket
                log.exception("The live feed's socket thread failed on one call")

    def _add(self, peer: Peer) -> None:
        self._peers[peer.sock] = peer
        self._selector.register(peer.sock, selectors.EVENT_READ, peer)
        self._drain(peer)

    def _drain_all(self) -> None:
        for peer in list(self._peers.values()):
            self._drain(peer)

    def _drain(self, peer: Peer) -> None:
        """Move what the peer's inbox holds into its outbound bytes, then send them."""
        while not peer.inbox.empty():
            item = peer.inbox.get_nowait()
            if isinstance(item, int):
                self._close(peer, item)
                return
            if peer.closing_until is None and item.id not in peer.skip:
                peer.outbound += item.wire
        self._flush(peer)

    def _read(self, peer: Peer) -> None:
        try:
            data = peer.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._end(peer)
            return
        connection = peer.ws.ws
        try:
            connection.receive_data(data)
            for event in connection.events():
                if isinstance(event, CloseConnection):
                    if peer.closing_until is None:
                        peer.outbound += connection.send(event.response())
                        self._flush(peer)
                    self._end(peer)
                    return
                if isinstance(event, Ping):
                    peer.outbound += connection.send(event.response())
                elif isinstance(event, Pong):
                    peer.pong_received = True
                elif isinstance(event, TextMessage | BytesMessage):
                    # What a client sends is dropped, so it cannot pile up in memory.
                    peer.message_bytes += len(event.data)
                    if peer.message_bytes > MAX_MESSAGE_BYTES:
                        self._close(peer, CloseReason.MESSAGE_TOO_BIG, "Message is too big")
                        return
                    if event.message_finished:
                        peer.message_bytes = 0
        except ProtocolError:
            self._end(peer)
            return
        self._flush(peer)

    def _flush(self, peer: Peer) -> None:
        if peer.outbound:
            try:
                sent = peer.sock.send(peer.outbound)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._end(peer)
                return
            del peer.outbound[:sent]
        if len(peer.outbound) > MAX_BACKLOG_BYTES:
            self._end(peer)
            return
        writing = bool(peer.outbound)
        if writing != peer.writing:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
            self._selector.modify(peer.sock, events, peer)
            peer.writing = writing

    def _close(self, peer: Peer, code: int, reason: str | None = None) -> None:
        """Send our close frame; the socket ends on the client's answer, or soon after."""
        if peer.closing_until is not None:
            return
        try:
            peer.outbound += peer.ws.ws.send(CloseConnection(code, reason))
        except ProtocolError:
            self._end(peer)
            return
        peer.closing_until = time.monotonic() + CLOSING_SECONDS
        self._flush(peer)

    def _end(self, peer: Peer) -> None:
        if self._peers.pop(peer.sock, None) is None:
            return
        self._selector.unregister(peer.sock)
        with contextlib.suppress(OSError):
            peer.sock.close()
        try:
            peer.on_end()
        except Exception:
            log.exception("The live feed could not forget a closed socket")
        if self._stopping and not self._peers:
            self._stopped.set()

    def _run_timers(self, now: float) -> None:
        for peer in list(self._peers.values()):
            if peer.closing_until is not None:
                if peer.closing_until <= now:
                    self._end(peer)
            elif peer.next_ping <= now:
                self._ping(peer, now)

    def _ping(self, peer: Peer, now: float) -> None:
        if not peer.pong_received:
            self._close(peer, CloseReason.POLICY_VIOLATION, "Ping/Pong timeout")
            return
        peer.pong_received = False
        peer.next_ping = now + PING_SECONDS
        peer.outbound += peer.ws.ws.send(Ping())
        self._flush(peer)

    def _stop_when_empty(self) -> None:
        self._stopping = True
        if not self._peers:
            self._stopped.set()


class NoReaderThread:
    """Takes the place of simple-websocket's reader thread, which is never wanted here.

    The live-sockets thread reads every socket instead; one thread per socket is what
    this module exists to avoid.
    """

    def __init__(self, target: Callable[[], None]) -> None:
        self.name = "no reader"

    def start(self) -> None:
        """Start nothing: the live-sockets thread reads the socket once it is adopted."""
