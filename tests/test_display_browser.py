"""One clock, one language, any screen: times, words and widths in headless Chromium."""

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from babel.dates import format_datetime
from playwright.sync_api import expect

from .browser import Account, Visitor, require_chromium
from .support import SEED, STATUS, Server, create_user_with_cli

pytestmark = pytest.mark.server

require_chromium()

ADMIN = Account("ana", "ana's long password")
ZONE = "America/Sao_Paulo"  # UTC-3 all year: never the UTC clock


@pytest.fixture(scope="module")
def display_server(server) -> Server:
    """The module's shared server (conftest), with an admin created by the CLI."""
    create_user_with_cli(server.data_dir, ADMIN.username, ADMIN.password, "admin")
    return server


@pytest.fixture
def reader(browser, display_server):
    """Opens a Portuguese reader in São Paulo, signed in; closed after the test."""
    opened: list[Visitor] = []

    def open_reader(**options) -> Visitor:
        visitor = Visitor(browser, display_server.base_url, "pt-BR", timezone_id=ZONE, **options)
        opened.append(visitor)
        visitor.open("/login")
        visitor.fill_login(ADMIN)
        visitor.submit(visitor.button("Entrar"))
        return visitor

    yield open_reader
    for visitor in opened:
        visitor.context.close()


def post(server: Server) -> str:
    """Store a DeliveryCallback through the webhook; return its messageId."""
    message_id = f"time-{uuid.uuid4().hex}"
    answer = requests.post(server.webhook_url, json={**SEED, "messageId": message_id}, timeout=30)
    assert answer.status_code == 200, answer.text
    return message_id


def row_time(visitor: Visitor, message_id: str):
    """The <time> of the row showing ``message_id``."""
    code = visitor.page.locator('[data-field="messageId"]', has_text=message_id)
    return visitor.main.locator("tr.delivery").filter(has=code).locator("time")


def moment_of(time) -> datetime:
    return datetime.fromisoformat(time.get_attribute("datetime").replace("Z", "+00:00"))


def assert_local(time) -> None:
    """The element shows São Paulo's clock and keeps the UTC time in its title."""
    moment = moment_of(time)
    local = moment.astimezone(ZoneInfo(ZONE))
    expect(time).to_contain_text(f"{local:%H:%M:%S}")
    assert f"{moment:%H:%M:%S}" not in time.text_content()
    assert "UTC" not in time.text_content()
    expect(time).to_have_attribute("title", f"{moment:%Y-%m-%d %H:%M:%S} UTC")


def test_a_server_rendered_time_shows_the_readers_local_time(display_server, reader):
    message_id = post(display_server)
    me = reader()
    me.open("/search?phone=554499999999")
    time = row_time(me, message_id)
    assert_local(time)
    # The callback's own page too.
    me.submit(time)
    assert_local(me.main.locator("dd time").first)


def test_a_live_row_shows_the_readers_local_time(display_server, reader):
    me = reader()
    me.open("/")
    expect(me.main.locator('[data-connection][data-state="live"]')).to_be_visible()
    message_id = post(display_server)
    time = row_time(me, message_id)
    expect(time).to_be_visible()
    assert_local(time)
    me.assert_clean()


def test_without_javascript_the_utc_text_shows(display_server, reader):
    message_id = post(display_server)
    me = reader(java_script_enabled=False)
    me.open("/search?phone=554499999999")
    time = row_time(me, message_id)
    moment = moment_of(time)
    # "29 de abril de 2026 20:21:31 UTC": the page's language, UTC.
    expect(time).to_have_text(format_datetime(moment, "long", locale="pt_BR"))
    expect(time).to_have_attribute("title", f"{moment:%Y-%m-%d %H:%M:%S} UTC")


def test_live_rows_show_statuses_in_the_pages_words(display_server, reader):
    me = reader()
    me.open("/")
    expect(me.main.locator('[data-connection][data-state="live"]')).to_be_visible()
    for status, shown in [("READ", "Lida"), ("COMPOSING", "Digitando"), ("NEW_ONE", "NEW_ONE")]:
        payload = {**STATUS, "status": status, "ids": [f"live-{uuid.uuid4().hex}"]}
        answer = requests.post(display_server.webhook_url, json=payload, timeout=30)
        stored = answer.json()["id"]
        row = me.main.locator(f'tr.delivery[data-id="{stored}"]')
        expect(row.locator('[data-field="status"]')).to_have_text(shown)
    me.assert_clean()
