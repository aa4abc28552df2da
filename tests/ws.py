"""Helpers for the live feed's tests: sign in over HTTP, open sockets, read their events."""

import contextlib
import json
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import websocket
from websocket import ABNF

from .support import PASSWORD, Server, csrf_token

# Generous: CI is a loaded 2-core machine running gunicorn, PostgreSQL and the tests.
DEADLINE = 60.0
_counter = iter(range(10**9))
_counter_lock = threading.Lock()


class Closed(Exception):
    """The server closed the socket; ``code`` is its close code (None if it sent none)."""

    def __init__(self, code: int | None, reason: str = ""):
        super().__init__(f"socket closed with code {code} {reason!r}")
        self.code = code
        self.reason = reason


def sign_in(server: Server, username: str, password: str = PASSWORD) -> requests.Session:
    """A requests Session signed in through the real login form."""
    browser = requests.Session()
    browser.headers["Accept-Language"] = "en"
    page = browser.get(f"{server.base_url}/login", timeout=30)
    form = {"username": username, "password": password, "csrf_token": csrf_token(page.text)}
    answer = browser.post(f"{server.base_url}/login", data=form, timeout=30, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return browser


def cookie_header(browser: requests.Session) -> str:
    """The browser's cookies as one Cookie header value."""
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in browser.cookies)


def socket_url(server: Server, after: int | None = None) -> str:
    """The live feed's URL on ``server``, with ``after`` when given."""
    url = server.base_url.replace("http://", "ws://", 1) + "/ws/deliveries"
    return url if after is None else f"{url}?after={after}"


def connect(
    server: Server,
    cookie: str | None,
    after: int | None = None,
    origin: str | None = None,
    timeout: float = 30,
) -> websocket.WebSocket:
    """Open the live feed (raises WebSocketBadStatusException when refused)."""
    options = {"origin": origin or server.base_url, "timeout": timeout}
    if cookie is not None:
        options["cookie"] = cookie
    return websocket.create_connection(socket_url(server, after), **options)


def close_quietly(ws: websocket.WebSocket) -> None:
    """Close a socket whatever state it is in."""
    try:
        ws.close(timeout=2)
    except Exception:  # the server may have closed it first
        pass
    finally:
        ws.shutdown()


def next_event(ws: websocket.WebSocket, deadline: float) -> dict:
    """The next JSON event, answering pings; raises Closed on a close frame."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no event before the deadline")
        ws.settimeout(remaining)
        try:
            frame = ws.recv_frame()
        except websocket.WebSocketTimeoutException as exc:
            raise TimeoutError("no event before the deadline") from exc
        except websocket.WebSocketConnectionClosedException as exc:
            raise Closed(None, "connection dropped without a close frame") from exc
        if frame.opcode == ABNF.OPCODE_TEXT:
            assert frame.fin, "events are sent as single frames"
            return json.loads(frame.data)
        if frame.opcode == ABNF.OPCODE_CLOSE:
            if len(frame.data) < 2:
                _answer_close(ws, websocket.STATUS_NORMAL)
                raise Closed(None)
            (code,) = struct.unpack("!H", frame.data[:2])
            _answer_close(ws, code)
            raise Closed(code, frame.data[2:].decode(errors="replace"))
        if frame.opcode == ABNF.OPCODE_PING:
            ws.pong(frame.data)
        # pongs and anything else carry no event


def _answer_close(ws: websocket.WebSocket, code: int) -> None:
    """Echo the server's close frame, as browsers do, so it can let go of the connection."""
    # The server may have dropped the connection already.
    with contextlib.suppress(Exception):
        ws.send_close(code)


def wait_for_close(ws: websocket.WebSocket, deadline: float) -> tuple[int | None, list[dict]]:
    """Read until the server closes; the close code and the events that came first."""
    events = []
    while True:
        try:
            events.append(next_event(ws, deadline))
        except Closed as closed:
            return closed.code, events


def until_caught_up(ws: websocket.WebSocket, deadline: float) -> tuple[list[dict], dict]:
    """Every event up to the first ``caught-up``, and that event's data."""
    events = []
    while True:
        event = next_event(ws, deadline)
        if event["event"] == "caught-up":
            return events, event["data"]
        events.append(event)


def delivery_ids(ws: websocket.WebSocket, until_id: int, deadline: float) -> list[int]:
    """Ids of the ``delivery`` events received up to and including ``until_id``."""
    ids = []
    while until_id not in ids:
        event = next_event(ws, deadline)
        assert event["event"] == "delivery", event
        ids.append(event["data"]["id"])
    return ids


def unique_message_id(prefix: str = "live") -> str:
    """A messageId no other callback of this test run carries."""
    with _counter_lock:
        number = next(_counter)
    return f"{prefix}-{time.time_ns()}-{number}"


def post_callback(server: Server, message_id: str | None = None) -> int:
    """POST one new DeliveryCallback; return the id it was stored under."""
    payload = {
        "type": "DeliveryCallback",
        "instanceId": "instance.id",
        "phone": "554499999999",
        "messageId": message_id or unique_message_id(),
    }
    answer = requests.post(server.webhook_url, json=payload, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["duplicate"] is False, body
    return body["id"]


def post_many(servers: list[Server], count: int, threads: int) -> list[int]:
    """POST ``count`` callbacks from ``threads`` threads, spread over ``servers``."""
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(post_callback, servers[i % len(servers)]) for i in range(count)]
        return [future.result() for future in futures]
