"""Broken HTTP framing on a real server: malformed chunked bodies and senders that hang up."""

import json
import socket

import pytest
from sqlalchemy import create_engine, func, select, text

from dashboard.extensions import db
from dashboard.models import Delivery, RejectedRequest

from .support import (
    SEED,
    Server,
    database_for,
    port_of,
    read_until_closed,
    request_head,
    wait_until,
)

pytestmark = pytest.mark.server

BODY = json.dumps({**SEED, "messageId": "framing"}).encode()
MALFORMED = "The chunked body is malformed"
MALFORMED_LOG = "Refused a webhook request: malformed chunked body"
# Each is sent whole; a body whose end never came is then ended with a half-close, as a
# sender that stops writing does (it can still read the answer).
BROKEN = {
    "a size that is no hex number": b"zz\r\n" + BODY + b"\r\n0\r\n\r\n",
    "a negative size": b"-5\r\n" + BODY + b"\r\n0\r\n\r\n",
    "no CRLF after a chunk's data": b"%x\r\n" % len(BODY) + BODY + b"XX0\r\n\r\n",
}
CUT_SHORT = {
    "no last chunk of size 0": b"%x\r\n" % len(BODY) + BODY + b"\r\n",
    "a chunk cut short": b"%x\r\n" % (len(BODY) + 50) + BODY,
    "no CRLF after the last chunk": b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n",
}
CHUNKED_CASES = [
    *[pytest.param(chunks, False, id=f"{name}, kept open") for name, chunks in BROKEN.items()],
    *[pytest.param(chunks, True, id=f"{name}, half-closed") for name, chunks in BROKEN.items()],
    *[pytest.param(chunks, True, id=name) for name, chunks in CUT_SHORT.items()],
]


def exchange(server: Server, raw: bytes, half_close: bool) -> tuple[int, dict]:
    """Send ``raw``, read until the server closes; the answer's status and JSON body."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=60) as connection:
        connection.sendall(raw)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        # Until EOF: the server must close a connection whose framing it lost.
        answer = read_until_closed(connection)
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def count_rows(server: Server, table: str) -> int:
    """Rows of ``table`` in the server's database."""
    return query_one(server, f"SELECT count(*) FROM {table}")


def query_one(server: Server, sql: str):
    """The one value ``sql`` selects from the server's database."""
    url = database_for(server.data_dir) or f"sqlite:///{server.data_dir / 'dashboard.sqlite3'}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(text(sql))
    finally:
        engine.dispose()


def log_after(server: Server, start: int, line: str) -> str:
    """The server's log from ``start`` on, once it holds ``line``."""
    return wait_until(
        lambda: line in server.log()[start:] and server.log()[start:],
        message=f"{line!r} in the server log",
    )


@pytest.mark.parametrize(("chunks", "half_close"), CHUNKED_CASES)
def test_a_malformed_chunked_body_is_a_400_with_one_log_line(server, chunks, half_close):
    stored, rejected = count_rows(server, "deliveries"), count_rows(server, "rejected_requests")
    start = len(server.log())

    raw = request_head(port_of(server), "Transfer-Encoding: chunked") + chunks
    status, answer = exchange(server, raw, half_close)

    assert status == 400
    assert answer["error"].startswith(MALFORMED)
    log = log_after(server, start, MALFORMED_LOG)
    assert log.count(MALFORMED_LOG) == 1
    assert "Traceback" not in log
    assert count_rows(server, "deliveries") == stored
    # Kept for admins like any refused request, with no bytes: they were not a body.
    assert count_rows(server, "rejected_requests") == rejected + 1


def test_a_sender_that_hangs_up_mid_body_leaves_one_line_and_nothing_stored(server):
    stored, rejected = count_rows(server, "deliveries"), count_rows(server, "rejected_requests")
    start = len(server.log())
    declared = len(BODY) + 100
    raw = request_head(port_of(server), f"Content-Length: {declared}") + BODY
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=60) as connection:
        connection.sendall(raw)

    line = f"A webhook request ended before its {declared}-byte body was complete"
    log = log_after(server, start, line)
    assert log.count(line) == 1
    assert "Traceback" not in log
    # A whole JSON object arrived, yet the sender never finished: it is not acknowledged.
    assert count_rows(server, "deliveries") == stored
    assert count_rows(server, "rejected_requests") == rejected


def test_a_sender_that_stops_mid_body_is_told_why(server):
    declared = len(BODY) + 100
    raw = request_head(port_of(server), f"Content-Length: {declared}") + BODY
    status, answer = exchange(server, raw, half_close=True)
    assert status == 400
    assert answer == {
        "error": f"The body ended before the {declared} bytes its Content-Length announced; "
        "nothing was stored."
    }


def test_after_broken_bodies_the_webhook_still_stores_callbacks(server):
    raw = request_head(port_of(server), "Transfer-Encoding: chunked") + b"zz\r\n"
    assert exchange(server, raw, half_close=True)[0] == 400
    chunks = b"%x\r\n" % len(BODY) + BODY + b"\r\n0\r\n\r\n"
    raw = request_head(port_of(server), "Transfer-Encoding: chunked\r\nConnection: close")
    status, answer = exchange(server, raw + chunks, half_close=False)
    assert status == 200
    assert set(answer) == {"id", "duplicate"}


def test_a_declared_oversize_length_is_a_413_before_any_of_the_body_is_sent(server):
    rejected = count_rows(server, "rejected_requests")
    # Headers only, the connection kept open for writing: a server that waited for the
    # body (or for 64 KiB of it) would never answer, and this would time out.
    raw = request_head(port_of(server), f"Content-Length: {10**9}")
    status, answer = exchange(server, raw, half_close=False)
    assert status == 413
    assert answer["error"] == "The body is larger than 64 KiB."
    assert count_rows(server, "rejected_requests") == rejected + 1


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(b"%x\r\n" % 10**12 + b"{", id="one chunk declaring a terabyte"),
        pytest.param(
            b"".join(b"4000\r\n" + b" " * 0x4000 + b"\r\n" for _ in range(5)),
            id="chunks adding up to over 64 KiB",
        ),
    ],
)
def test_a_chunked_body_declaring_over_the_limit_is_a_413_without_waiting_for_it(server, chunks):
    rejected = count_rows(server, "rejected_requests")
    # The connection stays open for writing: a server that waited for the declared data
    # would never answer, and this would time out.
    raw = request_head(port_of(server), "Transfer-Encoding: chunked") + chunks
    status, answer = exchange(server, raw, half_close=False)
    assert status == 413
    assert answer["error"] == "The body is larger than 64 KiB."
    newest = "SELECT {} FROM rejected_requests ORDER BY id DESC LIMIT 1"
    assert count_rows(server, "rejected_requests") == rejected + 1
    assert query_one(server, newest.format("status_code")) == 413


def test_a_short_body_under_any_wsgi_server_is_the_same_400(client, webhook_path):
    # Werkzeug raises ClientDisconnected where gunicorn hands over the short body.
    declared = len(BODY) + 100
    response = client.post(
        webhook_path,
        data=BODY,
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(declared)},
    )
    assert response.status_code == 400
    assert response.json["error"].startswith(f"The body ended before the {declared} bytes")
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert session.scalar(select(func.count()).select_from(RejectedRequest)) == 0
