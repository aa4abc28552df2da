"""Slow and stalled clients on a real server: they hold no thread, and time out with a 408."""

import json
import socket
import threading

import pytest
import requests

from .support import (
    SEED,
    TOKEN,
    port_of,
    query,
    read_until_closed,
    request_head,
    start_server,
    stop_server,
    wait_until,
)

pytestmark = pytest.mark.server

THREADS = 4
BODY = json.dumps(SEED).encode()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server of one worker with few threads, and a long deadline for whole requests."""
    running = start_server(
        tmp_path_factory.mktemp("slow"),
        "--workers",
        "1",
        "--threads",
        str(THREADS),
        env={"DASHBOARD_REQUEST_SECONDS": "300"},
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def impatient_server(tmp_path_factory):
    """A server that waits one second for a whole request."""
    running = start_server(
        tmp_path_factory.mktemp("impatient"), env={"DASHBOARD_REQUEST_SECONDS": "1"}
    )
    yield running
    stop_server(running)


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(server)), timeout=60)


def stored_ids(server, prefix: str) -> set[str]:
    rows = query(
        server.data_dir,
        "SELECT message_id FROM deliveries WHERE message_id LIKE :prefix",
        prefix=f"{prefix}%",
    )
    return {row[0] for row in rows}


def test_twice_as_many_stalled_clients_as_threads_do_not_stop_the_webhook(small_server):
    stalled = []
    stop_trickling = threading.Event()
    try:
        for _ in range(THREADS):
            # Half of its headers, then nothing.
            connection = connect(small_server)
            connection.sendall(request_head(port_of(small_server), "Content-Length: 10")[:40])
            stalled.append(connection)
            # Its headers and part of its body, then nothing.
            connection = connect(small_server)
            connection.sendall(
                request_head(port_of(small_server), f"Content-Length: {len(BODY)}") + BODY[:5]
            )
            stalled.append(connection)
        # And one that sends a byte of its body now and then, never reaching the end.
        trickler = connect(small_server)
        # Under the 64 KiB limit: a larger declared body would be refused at once.
        trickler.sendall(request_head(port_of(small_server), "Content-Length: 60000"))
        stalled.append(trickler)

        def trickle():
            while not stop_trickling.wait(0.2):
                trickler.sendall(b" ")

        threading.Thread(target=trickle, daemon=True).start()

        sent = {f"slow-clients-{n}" for n in range(20)}
        for message_id in sorted(sent):
            response = requests.post(
                small_server.webhook_url, json={**SEED, "messageId": message_id}, timeout=30
            )
            assert response.status_code == 200, response.text
        assert stored_ids(small_server, "slow-clients-") == sent

        # The stalled clients are still waiting: nothing was answered or closed on them.
        for connection in stalled:
            connection.setblocking(False)
            with pytest.raises(BlockingIOError):
                connection.recv(1)
    finally:
        stop_trickling.set()
        for connection in stalled:
            connection.close()


def test_a_request_not_whole_in_time_is_a_408_and_closed(impatient_server):
    with connect(impatient_server) as connection:
        connection.sendall(
            request_head(port_of(impatient_server), f"Content-Length: {len(BODY)}") + BODY[:5]
        )
        answer = read_until_closed(connection)
    status_line, _, body = answer.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {"error": "The request did not arrive whole in time; send it again."}


@pytest.mark.parametrize(
    ("head", "message"),
    [
        # No language asked for: the product's own, as on every page and answer.
        ("Content-Length: 50", "A requisição não chegou inteira a tempo; envie-a de novo."),
        ("Accept-Language: pt-BR\r\nContent-Length: 50", "A requisição não chegou"),
        ("Accept-Language: de, en;q=0.8\r\nContent-Length: 50", "The request did not arrive"),
    ],
)
def test_the_408_is_in_the_language_the_request_asked_for(impatient_server, head, message):
    partial = f"POST /webhooks/{TOKEN} HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n{{}}"
    with connect(impatient_server) as connection:
        connection.sendall(partial.encode())
        answer = read_until_closed(connection)
    status_line, _, body = answer.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"].startswith(message)


def test_a_head_cut_short_still_answers_in_the_language_it_asked_for(impatient_server):
    with connect(impatient_server) as connection:
        connection.sendall(f"POST /webhooks/{TOKEN} HTTP/1.1\r\nAccept-Language: en\r\nHo".encode())
        answer = read_until_closed(connection)
    assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {
        "error": "The request did not arrive whole in time; send it again."
    }


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(impatient_server):
    with connect(impatient_server) as connection:
        assert read_until_closed(connection) == b""


def test_a_client_that_expects_100_continue_is_told_to_send_its_body(small_server):
    body = json.dumps({**SEED, "messageId": "expect-continue"}).encode()
    with connect(small_server) as connection:
        connection.sendall(
            request_head(
                port_of(small_server), f"Expect: 100-continue\r\nContent-Length: {len(body)}"
            )
        )
        interim = connection.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.sendall(body)
        wait_until(
            lambda: stored_ids(small_server, "expect-continue"), message="the callback stored"
        )


def test_pipelined_requests_are_each_answered(small_server):
    requests_sent = b"".join(
        request_head(port_of(small_server), f"Content-Length: {len(body)}") + body
        for body in (json.dumps({**SEED, "messageId": f"pipelined-{n}"}).encode() for n in range(3))
    )
    with connect(small_server) as connection:
        connection.sendall(requests_sent)
        answers = b""
        while answers.count(b"HTTP/1.1 200 ") < 3:
            chunk = connection.recv(65536)
            assert chunk, f"closed after {answers!r}"
            answers += chunk
    assert stored_ids(small_server, "pipelined-") == {f"pipelined-{n}" for n in range(3)}


def test_no_longer_reading_a_client_that_is_gone_does_not_fail_the_poller():
    from dashboard.server.worker import _stop_reading

    closed = socket.socket()
    closed.close()
    _stop_reading(closed)  # shutdown() fails with EBADF here, not ENOTCONN
