"""The live feed page in headless Chromium against a real `zapi-dashboard serve`."""

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from playwright.sync_api import ConsoleMessage, expect

from dashboard import create_app, deliveries
from dashboard.extensions import db
from dashboard.payloads import parse

from .browser import PHONE_VIEWPORT, Account, Visitor, require_chromium
from .support import (
    SEED,
    TOKEN,
    Server,
    create_user_with_cli,
    free_port,
    start_server,
    stop_server,
)
from .test_selftest_tls import write_self_signed_certificate
from .tls_proxy import TlsProxy
from .ws import DEADLINE, close_quietly, connect, cookie_header, sign_in, until_caught_up

pytestmark = pytest.mark.server

require_chromium()

ADMIN = Account("ana", "ana's long password")
SERVER_ARGS = ("--workers", "2", "--threads", "8")
# One worker: the check the page makes and its socket reach the same process.
ONE_WORKER = ("--workers", "1", "--threads", "8")
# A callback must reach an open page this fast. Measured from just before the POST to the
# moment live.js put the row in the table (the page's own clock, not Playwright's polling).
ARRIVAL_SECONDS = 2.0
# Waits are generous: CI is a loaded 2-core machine. They end as soon as the page is ready.
ARRIVAL_WAIT_MS = 15_000
# The page tries again after 1, 2, 4, 8, 16 s (±30 %): after a restart it may take up to
# about 21 s to knock; a loaded machine gets more room on top.
RECONNECT_WAIT_MS = 60_000
OFFLINE_BANNER_WAIT_MS = 30_000
OFFLINE_ALERT_MS = 10_000  # live.js shows the offline alert after this long without a socket
XSS = "<img src=x onerror=window.__pwned=1>"
# What Chromium logs for a fetch that found no server (refused, or cut by the shutdown).
CONNECTION_FAILED = re.compile(
    r"Failed to load resource: net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET"
    r"|CONNECTION_CLOSED|EMPTY_RESPONSE)"
)

# What Chromium logs for a refused handshake: the status, but for 401 a sentence of its own.
HANDSHAKE_STATUS = re.compile(r"Error during WebSocket handshake: Unexpected response code: (\d+)")
HANDSHAKE_UNAUTHORIZED = "HTTP Authentication failed; no valid credentials available"

# The feed's list of every callback; "/" lists messages.
EVERY_CALLBACK = "/?view=callbacks"

# Resolves with Date.now() the moment a row showing ``messageId`` enters the feed.
WATCH_FOR_ROW = """
(messageId) => {
  const rows = document.querySelector("[data-feed-rows]");
  const present = () => Array.from(rows.querySelectorAll('[data-field="messageId"]'))
    .some((code) => code.textContent === messageId);
  window.__rowArrived = new Promise((resolve) => {
    const observer = new MutationObserver(() => {
      if (present()) {
        observer.disconnect();
        resolve(Date.now());
      }
    });
    observer.observe(rows, { childList: true, subtree: true });
  });
}
"""


class FeedVisitor(Visitor):
    """A :class:`Visitor` that can let through the errors of a server that is down or refusing.

    Chromium logs every refused connection as a console error. Inside ``server_down``, and
    only there, two kinds are expected: the live socket's failed attempts, and the failed
    fetches of /api/status (status.js asks every 5 s) and /api/live/check (live.js asks it
    why the socket failed). Inside ``socket_refused``, only the socket's handshakes refused
    with the given statuses are. Any other console error is still a problem.
    """

    def __init__(self, *args, **kwargs):
        self.down_url: str | None = None
        self.refusing: tuple[str, set[int]] | None = None
        self.tolerated: list[str] = []
        super().__init__(*args, **kwargs)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and (
            self._server_down_error(message) or self._refused_socket_error(message)
        ):
            self.tolerated.append(message.text)
            return
        super()._console(message)

    def _server_down_error(self, message: ConsoleMessage) -> bool:
        if self.down_url is None:
            return False
        if re.match(rf"{socket_failure(self.down_url)}\b", message.text):
            return True
        url = message.location.get("url", "")
        return (
            url == f"{self.down_url}/api/status"
            or url.startswith(f"{self.down_url}/api/live/check?")
        ) and CONNECTION_FAILED.fullmatch(message.text) is not None

    def _refused_socket_error(self, message: ConsoleMessage) -> bool:
        if self.refusing is None:
            return False
        base_url, statuses = self.refusing
        refused = re.fullmatch(rf"{socket_failure(base_url)}: (.*)", message.text)
        if refused is None:
            return False
        if refused.group(1) == HANDSHAKE_UNAUTHORIZED:
            return 401 in statuses
        code = HANDSHAKE_STATUS.fullmatch(refused.group(1))
        return code is not None and int(code.group(1)) in statuses

    @contextmanager
    def server_down(self, base_url: str):
        """Tolerate the failed connections to ``base_url`` until the block ends."""
        self.down_url = base_url
        try:
            yield
        finally:
            self.page.evaluate("0")  # a round trip, so every earlier console event is in
            self.down_url = None

    @contextmanager
    def socket_refused(self, base_url: str, *statuses: int):
        """Tolerate handshakes of the live socket on ``base_url`` refused with ``statuses``."""
        self.refusing = (base_url, set(statuses))
        try:
            yield
        finally:
            self.page.evaluate("0")
            self.refusing = None

    def next_check(self):
        """Wait for live.js's next question to /api/live/check; return its JSON answer."""
        with self.page.expect_response(
            lambda response: response.url.startswith(self.url("/api/live/check?")),
            timeout=RECONNECT_WAIT_MS,
        ) as answer:
            pass
        return answer.value.json()

    # -- the live feed -------------------------------------------------------------------

    @property
    def connection(self):
        """The connection line: Connecting…, Live, Reconnecting… or Offline since …"""
        return self.main.locator("[data-connection]")

    @property
    def offline_banner(self):
        """The alert shown after 10 s without a connection."""
        return self.main.locator("[data-offline-banner]")

    @property
    def refused_banner(self):
        """The alert that says why the server refuses the socket."""
        return self.main.locator("[data-refused-banner]")

    @property
    def feed_rows(self):
        """Every row of the feed table's body: deliveries and dividers, top to bottom."""
        return self.main.locator("[data-feed-rows] > tr")

    def delivery_row(self, message_id: str):
        """The feed row of the callback with ``message_id``."""
        code = self.page.locator('[data-field="messageId"]', has_text=message_id)
        return self.main.locator("[data-feed-rows] > tr.delivery").filter(has=code)

    @property
    def message_rows(self):
        """Every message row of the feed, top to bottom."""
        return self.main.locator("[data-message-rows] > tr.message")

    def message_row_with_news(self, delivery_id: int):
        """The message row whose latest news is the callback ``delivery_id``."""
        return self.main.locator(f'[data-message-rows] > tr.message[data-news="{delivery_id}"]')

    @property
    def instance_events(self):
        """The line of each instance's latest event, at the top."""
        return self.main.locator("[data-instance-events] > li")


def socket_failure(base_url: str) -> str:
    """The start of what Chromium logs when the live socket of ``base_url`` fails, as a regex."""
    scheme, host = base_url.split("://", 1)
    socket_scheme = "wss" if scheme == "https" else "ws"
    url = rf"{socket_scheme}://{re.escape(host)}/ws/deliveries\?after=\d+"
    return rf"WebSocket connection to '{url}' failed"


@pytest.fixture
def visitor(browser):
    """Opens visitors of a server (a context each), signed in unless told; closed after the test.

    ``base_url`` is where the browser goes when that is not the server itself (a proxy).
    """
    opened: list[FeedVisitor] = []

    def open_visitor(
        server: Server, signed_in: bool = True, base_url: str | None = None, **options
    ) -> FeedVisitor:
        visitor = FeedVisitor(browser, base_url or server.base_url, **options)
        opened.append(visitor)
        if signed_in:
            visitor.sign_in(ADMIN)
        return visitor

    yield open_visitor
    for visitor in opened:
        visitor.context.close()


@pytest.fixture(scope="module")
def live_server(server) -> Server:
    """The module's shared server (conftest), with the admin created by the CLI."""
    create_user_with_cli(server.data_dir, ADMIN.username, ADMIN.password, "admin")
    return server


@pytest.fixture
def servers():
    """Start servers (on a chosen port, if given); every one is stopped after the test."""
    started: list[Server] = []

    def start(
        data_dir: Path,
        port: int | None = None,
        name: str = "server",
        args: tuple[str, ...] = SERVER_ARGS,
        env: dict | None = None,
    ) -> Server:
        server = start_server(data_dir, *args, name=name, port=port, env=env)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        stop_server(server)


def callback(**fields) -> dict:
    """A DeliveryCallback with a messageId of its own (so never a duplicate)."""
    return {**SEED, "messageId": f"live-{uuid.uuid4().hex}", **fields}


def post(server: Server, payload: dict) -> int:
    """POST ``payload`` to the server's webhook like Z-API does; return the stored id."""
    answer = requests.post(server.webhook_url, json=payload, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["duplicate"] is False
    return answer.json()["id"]


def store_directly(data_dir: Path, payloads: list[dict]) -> list[int]:
    """Write callbacks into the server's SQLite file from this process (the server is down)."""
    create_app({"DATA_DIR": str(data_dir), "WEBHOOK_TOKEN": TOKEN})
    try:
        callbacks = [parse(json.dumps(payload).encode()) for payload in payloads]
        with db.writing() as session:
            return [recorded.id for recorded in deliveries.record(session, callbacks)]
    finally:
        db.engine.dispose()


def open_live_feed(me: FeedVisitor, path: str = EVERY_CALLBACK) -> str:
    """Open the live feed, wait until its socket is open; return the page's HTML."""
    response = me.open(path)
    expect(me.connection).to_have_text("Live", timeout=RECONNECT_WAIT_MS)
    expect(me.offline_banner).to_be_hidden()
    return response.text()


def test_a_callback_appears_on_the_open_page_without_reload(live_server, visitor):
    me = visitor(live_server)
    open_live_feed(me)
    payload = callback()
    me.page.evaluate(WATCH_FOR_ROW, payload["messageId"])
    navigations: list[str] = []
    me.page.on("framenavigated", lambda frame: navigations.append(frame.url))

    posted_at = time.time()
    post(live_server, payload)
    row = me.delivery_row(payload["messageId"])
    expect(row).to_be_visible(timeout=ARRIVAL_WAIT_MS)
    seen_after = time.time() - posted_at
    arrived_after = me.page.evaluate("window.__rowArrived") / 1000 - posted_at
    print(f"\nlive row drawn {arrived_after:.3f} s after the POST (seen {seen_after:.3f} s)")
    assert arrived_after < ARRIVAL_SECONDS, f"the row took {arrived_after:.3f} s"

    assert navigations == [], "the page reloaded"
    # Shown the way people write it, the stored digits kept for copying and filtering.
    expect(row.locator('[data-field="phone"]')).to_have_text("+55 44 9999-9999")
    expect(row.locator('[data-field="phone"]')).to_have_attribute("data-phone", SEED["phone"])
    expect(row.locator('[data-field="type"]')).to_have_text("DeliveryCallback")
    expect(row).to_contain_text("Handed to WhatsApp")
    expect(me.feed_rows.first).to_have_attribute("data-id", re.compile(r"^\d+$"))
    expect(me.feed_rows.first).to_contain_text(payload["messageId"])  # newest on top
    expect(me.connection).to_have_text("Live")
    me.assert_clean()


def test_the_page_reconnects_after_a_restart_and_shows_what_it_missed(tmp_path, servers, visitor):
    data_dir = tmp_path / "data"
    port = free_port()
    server = servers(data_dir, port, "server")
    create_user_with_cli(data_dir, ADMIN.username, ADMIN.password, "admin")
    before = callback()
    post(server, before)

    me = visitor(server)
    open_live_feed(me)
    expect(me.delivery_row(before["messageId"])).to_be_visible()
    missed = [callback(phone=f"55449000000{n}") for n in range(3)]

    with me.server_down(server.base_url), ThreadPoolExecutor(1) as background:
        # stop_server waits for gunicorn to exit; the page is watched meanwhile.
        stopped = background.submit(stop_server, server)
        expect(me.connection).to_have_text("Reconnecting…", timeout=OFFLINE_BANNER_WAIT_MS)
        expect(me.offline_banner).to_be_hidden()

        # After 10 s without a connection: the alert, and the time the feed went offline.
        banner = me.alert("The live feed is offline.")
        expect(banner).to_be_visible(timeout=OFFLINE_BANNER_WAIT_MS)
        expect(banner).to_have_text(
            "The live feed is offline. New callbacks will appear once it reconnects; trying again…"
        )
        expect(me.connection).to_have_text(re.compile(r"^Offline since \d{1,2}:\d\d:\d\d"))

        stopped.result(timeout=120)  # fully gone before another server takes the port
        stored = store_directly(data_dir, missed)
        again = servers(data_dir, port, "server-again")
        assert again.base_url == server.base_url
        expect(me.connection).to_have_text("Live", timeout=RECONNECT_WAIT_MS)
    print(f"\nconsole errors tolerated while the server was down: {me.tolerated}")

    expect(me.offline_banner).to_be_hidden()
    # On top: the divider, then the three missed rows (newest first), then the old row.
    divider = me.feed_rows.nth(0)
    expect(divider).to_have_text("3 deliveries arrived while you were offline")
    expect(divider).to_have_class("feed-divider")
    for position, payload in enumerate(reversed(missed), start=1):
        row = me.feed_rows.nth(position)
        expect(row).to_contain_text(payload["messageId"])
        expect(row.locator('[data-field="phone"]')).to_have_attribute(
            "data-phone", payload["phone"]
        )
    expect(me.feed_rows.nth(1)).to_have_attribute("data-id", str(max(stored)))
    expect(me.feed_rows.nth(4)).to_contain_text(before["messageId"])
    expect(me.feed_rows.filter(has_text="arrived while you were offline")).to_have_count(1)

    # And live again: a new callback goes on top, above the divider.
    after = callback()
    post(again, after)
    expect(me.feed_rows.first).to_contain_text(after["messageId"], timeout=ARRIVAL_WAIT_MS)
    me.assert_clean()


def test_callback_text_is_shown_as_text_never_as_html(live_server, visitor):
    rendered = callback(phone=XSS, error=XSS, errorCode="SHADOW_BAN")
    post(live_server, rendered)

    me = visitor(live_server)
    html = open_live_feed(me)
    assert rendered["messageId"] in html  # drawn by the server, not by live.js
    assert "&lt;img src=x onerror=window.__pwned=1&gt;" in html
    live = callback(phone=XSS, error=XSS, errorCode="SHADOW_BAN")
    post(live_server, live)
    expect(me.delivery_row(live["messageId"])).to_be_visible(timeout=ARRIVAL_WAIT_MS)

    for payload in (rendered, live):
        row = me.delivery_row(payload["messageId"])
        expect(row).to_be_visible()
        expect(row).to_have_attribute("data-failed", "")
        expect(row.locator('[data-field="phone"]')).to_have_text(XSS)
        expect(row.locator('[data-field="error"]')).to_have_text(XSS)
        expect(row.locator('[data-field="errorCode"]')).to_have_text("SHADOW_BAN")
        expect(row).to_contain_text("Failed")
    expect(me.main.locator("[data-feed-rows] img")).to_have_count(0)
    expect(me.main.locator("[data-feed-table] img")).to_have_count(0)
    assert me.page.evaluate("typeof window.__pwned") == "undefined"
    me.assert_clean()


@pytest.fixture
def taken_place():
    """Opens a real socket of ``server`` for ADMIN (from outside the browser), closed after."""
    opened = []

    def take(server: Server):
        cookie = cookie_header(sign_in(server, ADMIN.username, ADMIN.password))
        holder = connect(server, cookie, after=0)
        opened.append(holder)
        until_caught_up(holder, time.monotonic() + DEADLINE)  # subscribed: the place is taken
        return holder

    yield take
    for holder in opened:
        close_quietly(holder)


FULL_MESSAGE = (
    "All live feeds of this server are in use (1 per worker). Close other tabs of the "
    "dashboard, or raise DASHBOARD_SOCKETS_PER_WORKER (and --threads) and restart."
)


def test_a_full_server_is_named_on_the_page_until_a_place_frees(
    tmp_path, servers, visitor, taken_place
):
    server = servers(tmp_path / "data", args=ONE_WORKER, env={"DASHBOARD_SOCKETS_PER_WORKER": "1"})
    create_user_with_cli(server.data_dir, ADMIN.username, ADMIN.password, "admin")
    holder = taken_place(server)
    me = visitor(server, signed_in=False)

    with me.socket_refused(server.base_url, 503):
        me.sign_in(ADMIN)  # lands on the feed, whose socket the server turns away
        alert = me.alert("All live feeds of this server are in use")
        expect(alert).to_have_text(FULL_MESSAGE, timeout=ARRIVAL_WAIT_MS)
        expect(me.connection).to_have_text("Live feed refused")
        expect(me.connection).to_have_attribute("data-state", "refused")
        # It stays while the page keeps trying: the next attempt gets the same answer.
        assert me.next_check()["reason"] == "full"
        expect(alert).to_have_text(FULL_MESSAGE)
        expect(me.offline_banner).to_be_hidden()

        close_quietly(holder)  # a place frees up: the next attempt opens
        expect(me.connection).to_have_text("Live", timeout=RECONNECT_WAIT_MS)
    expect(me.refused_banner).to_be_hidden()
    expect(me.offline_banner).to_be_hidden()
    # The feed it landed on lists messages: the new one appears there.
    row = me.message_row_with_news(post(server, callback()))
    expect(row).to_be_visible(timeout=ARRIVAL_WAIT_MS)
    me.assert_clean()


def test_a_refused_page_whose_session_ended_goes_to_the_login_page(
    tmp_path, servers, visitor, taken_place
):
    server = servers(tmp_path / "data", args=ONE_WORKER, env={"DASHBOARD_SOCKETS_PER_WORKER": "1"})
    create_user_with_cli(server.data_dir, ADMIN.username, ADMIN.password, "admin")
    taken_place(server)
    me = visitor(server, signed_in=False)

    # Signed out, the handshake answers 401, which the page cannot see; the check can.
    with me.socket_refused(server.base_url, 503, 401):
        me.sign_in(ADMIN)
        expect(me.alert("All live feeds of this server are in use")).to_be_visible(
            timeout=ARRIVAL_WAIT_MS
        )
        # The page's next questions are answered 401, as the test expects.
        for path in ("/api/status", f"/api/live/check?origin={quote(me.base_url, safe='')}"):
            me.expected_statuses[me.url(path)] = 401
        other_tab = me.context.new_page()
        other_tab.goto(me.url("/account"))
        other_tab.locator("details.account-menu > summary").click()
        other_tab.get_by_role("button", name="Sign out", exact=True).click()
        expect(other_tab).to_have_url(me.url("/login"))
        expect(me.page).to_have_url(
            re.compile(re.escape(me.url("/login?next="))), timeout=RECONNECT_WAIT_MS
        )
    me.expect_sent_to_login("/")
    me.assert_clean()


@pytest.fixture
def tls_proxy(tmp_path):
    """Starts a TLS proxy in front of a server, like Caddy or nginx; closed after the test."""
    started: list[TlsProxy] = []

    def start(server: Server) -> TlsProxy:
        key, cert = write_self_signed_certificate(tmp_path)
        proxy = TlsProxy(int(server.base_url.rsplit(":", 1)[1]), cert, key)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.close()


def test_a_tls_proxy_the_dashboard_does_not_trust_is_explained_on_the_page(
    tmp_path, servers, visitor, tls_proxy
):
    # The usual mistake: TLS ends at the proxy and DASHBOARD_TRUSTED_PROXIES is unset, so the
    # page is at https:// while the dashboard believes its requests came over http.
    server = servers(tmp_path / "data", args=ONE_WORKER)
    create_user_with_cli(server.data_dir, ADMIN.username, ADMIN.password, "admin")
    proxy = tls_proxy(server)
    me = visitor(server, signed_in=False, base_url=proxy.base_url, ignore_https_errors=True)
    me.page.clock.install()  # time runs as usual, and can be moved on without waiting

    with me.socket_refused(proxy.base_url, 403):
        me.sign_in(ADMIN)
        alert = me.alert("DASHBOARD_TRUSTED_PROXIES")
        expect(alert).to_have_text(
            f"This page is at {proxy.base_url} but the dashboard sees its requests as "
            f"http://127.0.0.1:{proxy.port}. Behind a reverse proxy, set "
            "DASHBOARD_TRUSTED_PROXIES=1 (the number of proxies) and restart.",
            timeout=ARRIVAL_WAIT_MS,
        )
        expect(me.connection).to_have_text("Live feed refused")
        assert me.next_check()["reason"] == "origin"
        expect(alert).to_be_visible()
        # Past the moment a plain outage shows its offline alert: the reason stays, alone.
        me.page.clock.run_for(OFFLINE_ALERT_MS + 1000)
        expect(me.connection).to_have_text("Live feed refused")
        expect(me.main.get_by_role("alert")).to_have_count(1)
        expect(alert).to_be_visible()
        # Checked while still refused: the page goes on retrying after the last step.
        me.assert_clean()


# -- the feed of messages ------------------------------------------------------------------


def status_of(message_id: str, word: str) -> dict:
    """The MessageStatusCallback of ``word`` for ``message_id``, as Z-API sends it."""
    return {
        "type": "MessageStatusCallback",
        "instanceId": SEED["instanceId"],
        "phone": SEED["phone"],
        "status": word,
        "ids": [message_id],
        "momment": int(time.time() * 1000),
    }


def test_a_message_row_changes_its_badge_in_place_as_its_statuses_arrive(live_server, visitor):
    me = visitor(live_server)
    open_live_feed(me, "/")
    payload = callback()
    row = me.message_row_with_news(post(live_server, payload))
    expect(row).to_be_visible(timeout=ARRIVAL_WAIT_MS)
    expect(me.message_rows.first).to_have_attribute("data-news", row.get_attribute("data-news"))
    expect(row.locator("[data-state-badge]")).to_have_text("✓ Queued")
    expect(row.locator('[data-field="phone"]')).to_have_text("+55 44 9999-9999")
    message_pk = row.get_attribute("data-message")
    expect(row.locator("[data-detail-link]")).to_have_attribute("href", f"/messages/{message_pk}")
    count = me.message_rows.count()
    same = me.main.locator(f'tr.message[data-message="{message_pk}"]')
    same.evaluate("row => { row.dataset.marked = 'yes'; }")  # the very element, not a new one

    for word, badge, state in (
        ("RECEIVED", "✓✓ Delivered", "received"),
        ("READ", "✓✓ Read", "read"),
    ):
        news = post(live_server, status_of(payload["messageId"], word))
        expect(same).to_have_attribute("data-news", str(news), timeout=ARRIVAL_WAIT_MS)
        expect(same.locator("[data-state-badge]")).to_have_text(badge)
        expect(same.locator("[data-state-badge]")).to_have_class(
            f"badge badge-state badge-state-{state}"
        )
        expect(same).to_have_attribute("data-marked", "yes")
        expect(me.message_rows).to_have_count(count)
    # The time is that of its latest news, in the reader's time zone, UTC on hover.
    expect(same.locator("time")).to_have_attribute("title", re.compile(r" UTC$"))
    me.assert_clean()


def test_the_toggle_shows_every_callback_and_back(live_server, visitor):
    me = visitor(live_server)
    open_live_feed(me, "/")
    payload = callback()
    post(live_server, payload)
    expect(me.main.get_by_role("heading", name="Latest messages")).to_be_visible()
    expect(me.main.get_by_role("checkbox", name="Failed only")).to_have_count(0)

    me.main.get_by_role("link", name="Every callback").click()
    expect(me.page).to_have_url(me.url(EVERY_CALLBACK))
    expect(me.main.get_by_role("heading", name="Latest callbacks")).to_be_visible()
    expect(me.delivery_row(payload["messageId"])).to_be_visible()
    expect(me.main.get_by_role("checkbox", name="Failed only")).to_be_visible()
    expect(me.main.get_by_role("button", name="Pause")).to_be_visible()
    expect(me.connection).to_have_text("Live", timeout=RECONNECT_WAIT_MS)
    live = callback()
    post(live_server, live)
    expect(me.delivery_row(live["messageId"])).to_be_visible(timeout=ARRIVAL_WAIT_MS)

    me.main.get_by_role("link", name="Messages", exact=True).click()
    expect(me.page).to_have_url(me.url("/"))
    expect(me.message_rows.first).to_be_visible()
    me.assert_clean()


def test_instance_events_show_as_a_line_at_the_top_that_updates_live(live_server, visitor):
    me = visitor(live_server)
    open_live_feed(me, "/")
    instance = f"inst-{uuid.uuid4().hex[:8]}"
    rows = me.message_rows.count()
    line = me.instance_events.filter(has_text=f"Instance {instance} ")

    post(
        live_server,
        {
            "type": "DisconnectedCallback",
            "instanceId": instance,
            "error": "Device has been disconnected",
            "disconnected": True,
        },
    )
    expect(line).to_have_text(
        re.compile(rf"^Instance {instance} disconnected at .+\.$"), timeout=ARRIVAL_WAIT_MS
    )
    post(
        live_server,
        {
            "type": "ConnectedCallback",
            "instanceId": instance,
            "connected": True,
            "momment": int(time.time() * 1000),
            "phone": SEED["phone"],
        },
    )
    expect(line).to_have_text(
        re.compile(rf"^Instance {instance} connected at .+\.$"), timeout=ARRIVAL_WAIT_MS
    )
    expect(line).to_have_count(1)
    expect(line.locator("time")).to_have_attribute("title", re.compile(r" UTC$"))
    # Not a failed send: no message row came of either.
    expect(me.message_rows).to_have_count(rows)

    me.page.reload()
    expect(line).to_have_text(re.compile(rf"^Instance {instance} connected at "))
    me.assert_clean()


def test_a_live_instance_event_is_no_failed_send_in_the_callback_list(live_server, visitor):
    me = visitor(live_server)
    open_live_feed(me)
    instance = f"inst-{uuid.uuid4().hex[:8]}"
    post(
        live_server,
        {"type": "DisconnectedCallback", "instanceId": instance, "error": "Device offline"},
    )
    post(live_server, callback(error="Phone number does not exist"))
    event = me.feed_rows.filter(has_text="DisconnectedCallback").first
    expect(event).to_contain_text("Device offline", timeout=ARRIVAL_WAIT_MS)
    expect(event.locator('[data-part="failed"]')).to_have_count(0)
    expect(event).not_to_have_attribute("data-failed", "")
    failed_send = me.feed_rows.filter(has_text="Phone number does not exist").first
    expect(failed_send.locator('[data-part="failed"]')).to_be_visible(timeout=ARRIVAL_WAIT_MS)
    me.assert_clean()


def received(from_me: bool, words: str) -> dict:
    """A ReceivedCallback in SEED's chat, shaped like Z-API's example: ours echoed or theirs."""
    return {
        "isStatusReply": False,
        "isGroup": False,
        "instanceId": SEED["instanceId"],
        "messageId": f"live-{uuid.uuid4().hex}",
        "phone": SEED["phone"],
        "fromMe": from_me,
        "fromApi": from_me,
        "momment": int(time.time() * 1000),
        "status": "SENT" if from_me else "RECEIVED",
        "chatName": "name",
        "senderName": "name",
        "type": "ReceivedCallback",
        "text": {"message": words},
    }


def test_our_own_echoed_message_is_marked_sent_by_us_live_on_a_phone(live_server, visitor):
    me = visitor(live_server, viewport=PHONE_VIEWPORT)
    open_live_feed(me)
    ours = received(True, "Seu pedido saiu para entrega")
    theirs = received(False, "chegou, obrigado")
    for payload in (ours, theirs):
        post(live_server, payload)
    echo, reply = me.delivery_row(ours["messageId"]), me.delivery_row(theirs["messageId"])
    expect(reply).to_be_visible(timeout=ARRIVAL_WAIT_MS)
    expect(echo.locator('[data-part="from-me"]')).to_have_text("Sent by us")
    expect(reply.locator('[data-part="from-me"]')).to_have_count(0)
    expect(echo.locator('[data-field="type"]')).to_have_text("ReceivedCallback")
    me.assert_fits_the_width()
    # Drawn by the server after a reload, the rows say the same.
    me.page.reload()
    expect(echo.locator('[data-part="from-me"]')).to_have_text("Sent by us")
    expect(reply.locator('[data-part="from-me"]')).to_have_count(0)
    me.assert_fits_the_width()
    me.assert_clean()


def test_the_feed_fits_a_phone(live_server, visitor):
    post(live_server, callback(error="Phone number does not exist"))
    post(
        live_server,
        {
            **SEED,
            "type": "ReceivedCallback",
            "fromMe": True,
            "messageId": f"echo-{uuid.uuid4().hex}",
            # A LID is shown as it came: one long word, as are these words.
            "phone": f"{uuid.uuid4().int % 10**15:015d}{uuid.uuid4().int % 10**15:015d}@lid",
            "text": {"message": "palavrassemespaço" * 8},
        },
    )
    post(
        live_server,
        {
            "type": "DisconnectedCallback",
            "instanceId": "a-rather-long-instance-id-" * 3,
            "error": "Device has been disconnected",
        },
    )
    me = visitor(live_server, viewport=PHONE_VIEWPORT)
    open_live_feed(me, "/")
    expect(me.message_rows.first).to_be_visible()
    me.assert_fits_the_width()
    me.assert_clean()


MEDIA_FAILURE = "Message not send caused by invalid media url"


def test_a_failure_count_goes_up_and_down_in_place_and_counts_a_message_once(live_server, visitor):
    me = visitor(live_server)
    open_live_feed(me, "/")
    line = me.main.locator('.failure-counts li[data-category="media"]')
    count = line.locator("[data-count]")
    before = int(count.text_content())
    payload = callback(error=MEDIA_FAILURE)
    failed = me.message_row_with_news(post(live_server, payload))
    expect(failed).to_be_visible(timeout=ARRIVAL_WAIT_MS)
    expect(count).to_have_text(str(before + 1))
    expect(line).to_be_visible()
    expect(line).to_contain_text("Media problem")
    message_pk = failed.get_attribute("data-message")

    # Another failure of the same message is news of it, not another failed message.
    again = post(live_server, {**payload, "error": "Got a 404 error while trying to send message"})
    expect(me.message_row_with_news(again)).to_be_visible(timeout=ARRIVAL_WAIT_MS)
    expect(count).to_have_text(str(before + 1))

    # Drawn again by the server, the count is the same, and its link lists the message.
    open_live_feed(me, "/")
    expect(count).to_have_text(str(before + 1))
    link = line.get_by_role("link")
    href = link.get_attribute("href")
    assert "state=failed" in href and "category=media" in href and "since=" in href
    link.click()
    expect(me.main.locator(f'tr.message[data-message-id="{message_pk}"]')).to_be_visible()
    open_live_feed(me, "/")

    # Evidence of receipt ends the failure: the count goes back down, in place.
    news = post(live_server, status_of(payload["messageId"], "RECEIVED"))
    expect(me.message_row_with_news(news)).to_be_visible(timeout=ARRIVAL_WAIT_MS)
    expect(count).to_have_text(str(before))
    if before == 0:
        expect(line).to_be_hidden()
    me.assert_clean()
