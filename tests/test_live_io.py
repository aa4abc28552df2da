"""The thread that serves every live socket of a process: dashboard/live_io.py."""

import queue
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from dashboard import live_io
from dashboard.live import Outgoing
from dashboard.live_io import LiveSockets, text_frame

DEADLINE = 30.0


class Client:
    """The browser's end of an adopted socket, speaking WebSocket through wsproto."""

    def __init__(self, sock: socket.socket, connection: WSConnection) -> None:
        self.sock = sock
        self.connection = connection
        self.sock.settimeout(DEADLINE)

    def send(self, event) -> None:
        self.sock.sendall(self.connection.send(event))

    def next_event(self):
        """The next event from the server; answers nothing by itself."""
        while True:
            for event in self.connection.events():
                return event
            data = self.sock.recv(65536)
            assert data, "the server closed the connection without a close frame"
            self.connection.receive_data(data)


@pytest.fixture
def adopted():
    """Adopt a fresh socket into a LiveSockets; its client, inbox and ended flag."""
    sockets = LiveSockets()
    made = []

    def adopt(skip=frozenset()):
        server_end, client_end = socket.socketpair()
        server = WSConnection(ConnectionType.SERVER)
        client = WSConnection(ConnectionType.CLIENT)
        server.receive_data(client.send(Request(host="dashboard", target="/ws/deliveries")))
        assert isinstance(next(server.events()), Request)
        client.receive_data(server.send(AcceptConnection()))
        assert isinstance(next(client.events()), AcceptConnection)
        inbox, ended = queue.SimpleQueue(), threading.Event()
        ws = SimpleNamespace(ws=server, sock=server_end, connected=True)
        sockets.adopt(ws, inbox, set(skip), ended.set)
        made.append(client_end)
        return Client(client_end, client), inbox, ended

    yield sockets, adopt
    for sock in made:
        sock.close()


def frame(row_id: int) -> Outgoing:
    text = f'{{"event": "delivery", "data": {{"id": {row_id}}}}}'
    return Outgoing(row_id, text, text_frame(text))


def test_every_socket_gets_the_inbox_frames_but_those_already_sent(adopted):
    sockets, adopt = adopted
    first, first_inbox, _ = adopt()
    second, second_inbox, _ = adopt(skip={2})
    for row_id in (1, 2, 3):
        first_inbox.put(frame(row_id))
        second_inbox.put(frame(row_id))
    sockets.deliver()
    assert [first.next_event().data for _ in range(3)] == [frame(n).text for n in (1, 2, 3)]
    assert [second.next_event().data for _ in range(2)] == [frame(n).text for n in (1, 3)]


def test_pings_are_answered_and_client_messages_dropped(adopted):
    sockets, adopt = adopted
    client, inbox, ended = adopt()
    client.send(TextMessage("hello"))
    client.send(Ping(b"are you there"))
    assert client.next_event() == Pong(b"are you there")
    inbox.put(frame(7))
    sockets.deliver()
    assert client.next_event().data == frame(7).text
    assert not ended.is_set()


def test_a_message_over_the_limit_closes_with_1009(adopted):
    _, adopt = adopted
    client, _, ended = adopt()
    client.send(TextMessage("x" * (live_io.MAX_MESSAGE_BYTES + 1)))
    closing = client.next_event()
    assert isinstance(closing, CloseConnection)
    assert closing.code == 1009
    client.send(closing.response())
    assert ended.wait(DEADLINE)


def test_a_close_code_in_the_inbox_closes_the_socket_with_it(adopted):
    sockets, adopt = adopted
    client, inbox, ended = adopt()
    inbox.put(frame(1))
    inbox.put(1001)
    inbox.put(frame(2))  # nothing is sent after the close frame
    sockets.deliver()
    assert client.next_event().data == frame(1).text
    closing = client.next_event()
    assert (type(closing), closing.code) == (CloseConnection, 1001)
    client.send(closing.response())
    assert ended.wait(DEADLINE)
    sockets.stop(DEADLINE)


def test_a_client_that_closes_gets_its_close_answered(adopted):
    _, adopt = adopted
    client, _, ended = adopt()
    client.send(CloseConnection(1000, "bye"))
    assert client.next_event() == CloseConnection(1000, "bye")
    assert ended.wait(DEADLINE)


def test_a_client_that_hangs_up_ends_the_socket(adopted):
    _, adopt = adopted
    client, _, ended = adopt()
    client.sock.close()
    assert ended.wait(DEADLINE)


def test_a_client_that_does_not_answer_pings_is_closed_with_1008(adopted, monkeypatch):
    monkeypatch.setattr(live_io, "PING_SECONDS", 0.2)
    monkeypatch.setattr(live_io, "TIMER_SECONDS", 0.1)
    _, adopt = adopted
    client, _, ended = adopt()
    assert isinstance(client.next_event(), Ping)  # not answered
    closing = client.next_event()
    assert (type(closing), closing.code) == (CloseConnection, 1008)
    assert ended.wait(DEADLINE)


def test_a_client_that_does_not_read_is_dropped_past_the_backlog(adopted, monkeypatch):
    monkeypatch.setattr(live_io, "MAX_BACKLOG_BYTES", 256 * 1024)
    sockets, adopt = adopted
    _, inbox, ended = adopt()
    big = "x" * 60_000
    deadline = time.monotonic() + DEADLINE
    while not ended.is_set() and time.monotonic() < deadline:
        # The socket pair's buffers fill up first; then the backlog grows past its limit.
        for row_id in range(20):
            inbox.put(Outgoing(row_id, big, text_frame(big)))
        sockets.deliver()
        ended.wait(0.05)
    assert ended.is_set()
