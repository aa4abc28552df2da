"""The live feed's socket on real gunicorn servers: fan-out, catch-up, refusals, closing."""

import json
import os
import re
import subprocess
import threading
import time

import pytest
import websocket

from dashboard import create_app, deliveries
from dashboard.extensions import db
from dashboard.payloads import parse

from .support import (
    PASSWORD,
    POSTGRES_URL,
    TOKEN,
    cli_command,
    create_user_with_cli,
    csrf_token,
    on_postgres,
    reset_postgres,
    start_server,
    stop_server,
)
from .ws import (
    DEADLINE,
    close_quietly,
    connect,
    cookie_header,
    delivery_ids,
    post_callback,
    post_many,
    sign_in,
    socket_url,
    until_caught_up,
    wait_for_close,
)

pytestmark = pytest.mark.server

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009  # what simple-websocket sends past max_message_size


@pytest.fixture
def started(tmp_path):
    """Start servers with start_server(); every one is stopped after the test."""
    servers = []

    def start(*args, data_dir=None, **kwargs):
        server = start_server(data_dir or tmp_path / "data", *args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        stop_server(server)


@pytest.fixture
def sockets():
    """Sockets to close after the test, whatever happened."""
    opened: list[websocket.WebSocket] = []
    yield opened
    for ws in opened:
        close_quietly(ws)


def signed_in_cookie(server, username="ana", role="admin"):
    create_user_with_cli(server.data_dir, username, PASSWORD, role)
    return cookie_header(sign_in(server, username))


def open_caught_up(server, cookie, after, sockets, deadline):
    """Open a socket with ``after``, and return it once it has caught up."""
    ws = connect(server, cookie, after=after)
    sockets.append(ws)
    events, caught_up = until_caught_up(ws, deadline)
    assert events == []
    assert caught_up == {"count": 0, "latest": after}
    return ws


def test_every_client_gets_every_delivery_once_and_in_order(started, sockets):
    server = started("--workers", "2", "--threads", "16")
    cookie = signed_in_cookie(server)
    deadline = time.monotonic() + DEADLINE
    warm_up = post_callback(server)
    # Each socket is its own connection, so the two workers' accept loops share them.
    clients = [open_caught_up(server, cookie, warm_up, sockets, deadline) for _ in range(10)]

    posted = post_many([server], 100, threads=2)
    # The last row of all: once a client has it, any duplicate would have come before it.
    final = post_callback(server)

    assert len(set(posted)) == 100
    for ws in clients:
        received = delivery_ids(ws, final, deadline)
        if on_postgres():
            # Two workers' ids can commit out of order there; a late one is sent when it
            # commits (docs/live-feed.md), still once, and before the last row of all.
            received[:-1] = sorted(received[:-1])
        assert received == [*sorted(posted), final]


def test_two_instances_on_postgres_fan_out_to_every_client(started, sockets, tmp_path):
    reset_postgres()
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    create_user_on(data_dir, POSTGRES_URL, "ana")
    env = {"DASHBOARD_DATABASE_URL": POSTGRES_URL}
    options = ("--workers", "2", "--threads", "16")
    first = started(*options, data_dir=data_dir, env=env, name="first")
    second = started(*options, data_dir=data_dir, env=env, name="second")
    deadline = time.monotonic() + DEADLINE
    warm_up = post_callback(first)
    clients = []
    for server in (first, second):
        cookie = cookie_header(sign_in(server, "ana"))
        clients += [open_caught_up(server, cookie, warm_up, sockets, deadline) for _ in range(5)]

    posted = post_many([first, second], 200, threads=4)
    # Committed after all 200: whoever reads it has read every one of them.
    final = post_callback(second)

    assert len(set(posted)) == 200
    for ws in clients:
        received = delivery_ids(ws, final, deadline)
        assert received[-1] == final
        assert len(received) == len(set(received)), "a delivery arrived twice"
        assert set(received[:-1]) == set(posted)


def create_user_on(data_dir, database_url, username, role="admin"):
    """`zapi-dashboard create-user` against ``database_url``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    result = subprocess.run(
        cli_command("create-user", username, "--role", role, "--password-stdin"),
        input=PASSWORD + "\n",
        env={
            **inherited,
            "DASHBOARD_DATA_DIR": str(data_dir),
            "DASHBOARD_WEBHOOK_TOKEN": TOKEN,
            "DASHBOARD_DATABASE_URL": database_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_client_that_was_away_catches_up_with_every_row_in_order(started, sockets):
    server = started("--workers", "2", "--threads", "8")
    cookie = signed_in_cookie(server)
    deadline = time.monotonic() + DEADLINE
    first = connect(server, cookie, after=0)
    sockets.append(first)
    events, caught_up = until_caught_up(first, deadline)
    assert (events, caught_up) == ([], {"count": 0, "latest": 0})
    last_seen = caught_up["latest"]
    close_quietly(first)

    posted = post_many([server], 300, threads=8)

    again = connect(server, cookie, after=last_seen)
    sockets.append(again)
    events, caught_up = until_caught_up(again, deadline)
    assert {event["event"] for event in events} == {"delivery"}
    assert [event["data"]["id"] for event in events] == sorted(posted)
    assert caught_up == {"count": 300, "latest": max(posted)}
    # Nothing of the catch-up comes again live: the next delivery is a new row.
    newer = post_callback(server)
    assert delivery_ids(again, newer, deadline) == [newer]


def test_more_than_a_thousand_missed_rows_give_a_gap_event(started, sockets):
    server = started("--workers", "1", "--threads", "8")
    cookie = signed_in_cookie(server)
    # The server shares the SQLite file: store the rows directly, much faster than HTTP.
    create_app({"DATA_DIR": str(server.data_dir), "WEBHOOK_TOKEN": TOKEN})
    try:
        callbacks = [
            parse(json.dumps({"type": "DeliveryCallback", "messageId": f"gap-{i}"}).encode())
            for i in range(1001)
        ]
        with db.writing() as session:
            stored = [recorded.id for recorded in deliveries.record(session, callbacks)]
    finally:
        db.engine.dispose()

    deadline = time.monotonic() + DEADLINE
    ws = connect(server, cookie, after=0)
    sockets.append(ws)
    events, caught_up = until_caught_up(ws, deadline)
    assert [event["event"] for event in events] == ["gap"], "no delivery before caught-up"
    assert events[0]["data"]["missed"] >= 1001
    assert events[0]["data"]["latest"] == max(stored)
    assert caught_up == {"count": 0, "latest": max(stored)}
    newer = post_callback(server)
    assert delivery_ids(ws, newer, deadline) == [newer]


def refusal(connect_call) -> websocket.WebSocketBadStatusException:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ws = connect_call()
        close_quietly(ws)  # only reached when the handshake wrongly succeeded
    return refused.value


def test_sockets_are_refused_before_the_handshake(started, sockets):
    server = started("--workers", "1", "--threads", "8", env={"DASHBOARD_SOCKETS_PER_WORKER": "2"})
    cookie = signed_in_cookie(server)
    deadline = time.monotonic() + DEADLINE

    no_session = refusal(lambda: connect(server, None, after=0))
    assert no_session.status_code == 401
    assert "error" in json.loads(no_session.resp_body)
    forged = refusal(lambda: connect(server, "session=forged", after=0))
    assert forged.status_code == 401

    assert refusal(lambda: connect(server, cookie, origin="http://evil.example")).status_code == 403
    https_origin = server.base_url.replace("http://", "https://")
    assert refusal(lambda: connect(server, cookie, origin=https_origin)).status_code == 403

    held = [open_caught_up(server, cookie, 0, sockets, deadline) for _ in range(2)]
    full = refusal(lambda: connect(server, cookie, after=0))
    assert full.status_code == 503
    assert "error" in json.loads(full.resp_body)

    # A closed socket frees its place.
    close_quietly(held[0])

    def third_socket():
        try:
            ws = connect(server, cookie, after=0)
        except websocket.WebSocketBadStatusException as exc:
            assert exc.status_code == 503
            return None
        sockets.append(ws)
        return ws

    fresh = wait_until_true(third_socket, deadline)
    assert until_caught_up(fresh, deadline)[1] == {"count": 0, "latest": 0}


def test_closed_sockets_free_their_places_at_once(started, sockets):
    # One worker with two places: a page reloaded at once must find the places its own
    # closed sockets held, round after round.
    server = started("--workers", "1", "--threads", "16", env={"DASHBOARD_SOCKETS_PER_WORKER": "2"})
    cookie = signed_in_cookie(server)
    for _ in range(4):
        pair = [connect(server, cookie, after=0) for _ in range(2)]
        sockets.extend(pair)
        assert [ws.getstatus() for ws in pair] == [101, 101]
        for ws in pair:
            close_quietly(ws)


def test_with_a_public_url_a_forged_host_gets_no_socket(started, sockets):
    server = started(
        "--workers", "1", "--threads", "8", env={"DASHBOARD_PUBLIC_URL": "https://dash.example.com"}
    )
    cookie = signed_in_cookie(server)

    def rebound_page():
        # A page on a name rebound to this server: the Host and Origin are its own.
        return websocket.create_connection(
            socket_url(server),
            host="evil.example",
            origin="http://evil.example",
            cookie=cookie,
            header=["Accept-Language: en"],
            timeout=30,
        )

    refused = refusal(rebound_page)
    assert refused.status_code == 403
    error = json.loads(refused.resp_body)["error"]
    assert "only accepts pages at https://dash.example.com (DASHBOARD_PUBLIC_URL)" in error
    # The admin's own browser on this machine, at the address the server printed.
    ws = connect(server, cookie)
    sockets.append(ws)
    assert ws.getstatus() == 101


def test_the_check_gives_the_handshakes_verdict(started, sockets):
    # One worker: the check and the socket reach the same process and its one place.
    server = started("--workers", "1", "--threads", "8", env={"DASHBOARD_SOCKETS_PER_WORKER": "1"})
    browser = sign_in_new(server, "ana", "admin")
    cookie = cookie_header(browser)
    deadline = time.monotonic() + DEADLINE
    https_origin = server.base_url.replace("http://", "https://")

    def verdicts(origin):
        """What the check says for ``origin``, then what a real handshake from it gets."""
        reason = live_check(browser, server, origin).get("reason")
        try:
            ws = connect(server, cookie, after=0, origin=origin)
        except websocket.WebSocketBadStatusException as refused:
            return reason, refused.status_code
        sockets.append(ws)
        return reason, ws

    reason, held = verdicts(server.base_url)
    assert reason is None
    assert until_caught_up(held, deadline)[1] == {"count": 0, "latest": 0}  # the place is taken
    assert verdicts(server.base_url) == ("full", 503)
    assert verdicts(https_origin) == ("origin", 403)
    assert verdicts("http://evil.example") == ("origin", 403)

    close_quietly(held)
    wait_until_true(lambda: live_check(browser, server, server.base_url)["ok"], deadline)
    reason, again = verdicts(server.base_url)
    assert reason is None
    assert until_caught_up(again, deadline)[1] == {"count": 0, "latest": 0}


def live_check(browser, server, origin) -> dict:
    """GET /api/live/check for a page at ``origin``, as the signed-in ``browser``."""
    answer = browser.get(f"{server.base_url}/api/live/check", params={"origin": origin}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_until_true(condition, deadline):
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_an_oversize_client_message_closes_the_socket(started, sockets):
    server = started("--workers", "1", "--threads", "8")
    cookie = signed_in_cookie(server)
    deadline = time.monotonic() + DEADLINE
    ws = open_caught_up(server, cookie, 0, sockets, deadline)
    # What a client sends within the limit is ignored, and the socket stays open.
    ws.send("x" * 100)
    newer = post_callback(server)
    assert delivery_ids(ws, newer, deadline) == [newer]

    ws.send("x" * 5000)
    code, events = wait_for_close(ws, deadline)
    assert (code, events) == (MESSAGE_TOO_BIG, [])


def test_a_disabled_users_socket_closes_with_1008(started, sockets):
    server = started("--workers", "2", "--threads", "8")
    admin = sign_in_new(server, "ana", "admin")
    create_user_with_cli(server.data_dir, "vera", PASSWORD, "viewer")
    viewer_cookie = cookie_header(sign_in(server, "vera"))
    deadline = time.monotonic() + DEADLINE
    viewer_socket = open_caught_up(server, viewer_cookie, 0, sockets, deadline)
    admin_socket = open_caught_up(server, cookie_header(admin), 0, sockets, deadline)

    page = admin.get(f"{server.base_url}/users", timeout=30)
    row = r'<td[^>]*>vera</td>\s*<td[^>]*>\s*<form method="post" action="/users/(\d+)/'
    found = re.search(row, page.text)
    assert found, page.text
    answer = admin.post(
        f"{server.base_url}/users/{found.group(1)}/disable",
        data={"csrf_token": csrf_token(page.text)},
        timeout=30,
    )
    assert answer.status_code == 200
    assert "Account vera updated." in answer.text
    disabled_at = time.monotonic()

    code, events = wait_for_close(viewer_socket, deadline)
    assert (code, events) == (POLICY_VIOLATION, [])
    assert time.monotonic() - disabled_at <= 5
    # The admin's session is alive: their socket stays open and keeps receiving.
    newer = post_callback(server)
    assert delivery_ids(admin_socket, newer, deadline) == [newer]


def sign_in_new(server, username, role):
    create_user_with_cli(server.data_dir, username, PASSWORD, role)
    return sign_in(server, username)


def test_stopping_the_server_closes_sockets_with_1001(started, sockets):
    server = started("--workers", "2", "--threads", "8")
    cookie = signed_in_cookie(server)
    deadline = time.monotonic() + DEADLINE
    ws = open_caught_up(server, cookie, 0, sockets, deadline)

    stopping = threading.Thread(target=stop_server, args=(server,))
    asked_at = time.monotonic()
    stopping.start()
    try:
        code, events = wait_for_close(ws, asked_at + 10)
        assert (code, events) == (GOING_AWAY, [])
        assert time.monotonic() - asked_at < 10
    finally:
        stopping.join(timeout=90)
    assert server.process.poll() is not None
