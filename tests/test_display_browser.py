"""One clock, one language, any screen: times, words and widths in headless Chromium."""

import re
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import requests
from babel.dates import format_datetime
from playwright.sync_api import expect

from .browser import PHONE_VIEWPORT, Account, Visitor, require_chromium
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
    me.open("/search?phone=554499999999&view=callbacks")
    time = row_time(me, message_id)
    assert_local(time)
    # The callback's own page too.
    me.submit(time)
    assert_local(me.main.locator("dd time").first)


def test_a_live_row_shows_the_readers_local_time(display_server, reader):
    me = reader()
    me.open("/?view=callbacks")
    expect(me.main.locator('[data-connection][data-state="live"]')).to_be_visible()
    message_id = post(display_server)
    time = row_time(me, message_id)
    expect(time).to_be_visible()
    assert_local(time)
    me.assert_clean()


def test_without_javascript_the_utc_text_shows(display_server, reader):
    message_id = post(display_server)
    me = reader(java_script_enabled=False)
    me.open("/search?phone=554499999999&view=callbacks")
    time = row_time(me, message_id)
    moment = moment_of(time)
    # "29 de abril de 2026 20:21:31 UTC": the page's language, UTC.
    expect(time).to_have_text(format_datetime(moment, "long", locale="pt_BR"))
    expect(time).to_have_attribute("title", f"{moment:%Y-%m-%d %H:%M:%S} UTC")


def test_a_verdicts_time_shows_the_readers_local_time(display_server, reader):
    message_id = post(display_server)
    me = reader()
    # The phone's latest message is the one just sent: its card answers for it.
    me.open("/search?phone=554499999999")
    card = me.main.locator("section.verdict-card .verdict")
    expect(card).to_contain_text("Entregue ao WhatsApp em ")
    assert_local(card.locator("time"))
    handed_at = moment_of(card.locator("time"))
    listed = me.main.locator("tr.message").first.locator("td.verdict time")
    assert_local(listed)
    # A pasted id opens the message's own page, whose verdict says the same.
    me.open(f"/search?messageId={message_id}")
    expect(me.page).to_have_url(re.compile(r"/messages/\d+$"))
    verdict = me.main.locator("[data-verdict]")
    assert_local(verdict.locator("time"))
    assert moment_of(verdict.locator("time")) == handed_at


def test_live_rows_show_statuses_in_the_pages_words(display_server, reader):
    me = reader()
    me.open("/?view=callbacks")
    expect(me.main.locator('[data-connection][data-state="live"]')).to_be_visible()
    for status, shown in [("READ", "Lida"), ("COMPOSING", "Digitando"), ("NEW_ONE", "NEW_ONE")]:
        payload = {**STATUS, "status": status, "ids": [f"live-{uuid.uuid4().hex}"]}
        answer = requests.post(display_server.webhook_url, json=payload, timeout=30)
        stored = answer.json()["id"]
        row = me.main.locator(f'tr.delivery[data-id="{stored}"]')
        expect(row.locator('[data-field="status"]')).to_have_text(shown)
    me.assert_clean()


@pytest.fixture(scope="module")
def phone_data(display_server):
    """What the pages show at their fullest: users, a token, a settings change, callbacks."""
    long_name = "maria.aparecida.dos.santos.oliveira.pereira"
    create_user_with_cli(display_server.data_dir, long_name, "a long enough password", "viewer")
    post(display_server)
    failed = {**SEED, "messageId": f"phone-{uuid.uuid4().hex * 2}", "errorCode": "SHADOW_BAN"}
    failed["error"] = "The message was not sent due to a likely shadow ban"
    assert requests.post(display_server.webhook_url, json=failed, timeout=30).status_code == 200
    return long_name


@pytest.fixture
def phone(browser, display_server, phone_data):
    """An English reader on a phone held upright, signed in as the admin."""
    visitor = Visitor(browser, display_server.base_url, viewport=PHONE_VIEWPORT)
    visitor.sign_in(ADMIN)
    yield visitor
    visitor.context.close()


def test_users_fit_a_phone_as_cards(phone, phone_data):
    phone.open("/users")
    phone.assert_fits_the_width()
    row = phone.main.locator("tbody tr").filter(has_text=phone_data)
    # A card: each value under its label, stacked, not side by side in columns.
    expect(row.locator("td").first).to_have_css("display", "block")
    expect(row.locator("td").nth(3).locator("time")).to_be_visible()


def test_refused_requests_fit_a_phone_as_cards(phone, display_server):
    unbroken = "x" * 300  # one word longer than the screen is wide
    body = f'{{"type": "DeliveryCallback", "note": "{unbroken}"'
    response = requests.post(
        display_server.webhook_url,
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    phone.open("/refused")
    phone.assert_fits_the_width()
    row = phone.main.locator("tbody tr").filter(has_text=unbroken)
    expect(row.locator("td").first).to_have_css("display", "block")
    expect(row.locator("pre")).to_be_visible()


def test_the_account_page_with_a_token_fits_a_phone(phone):
    phone.open("/account")
    form = phone.form_with_button("Create token")
    phone.field("name", form).fill("the CRM of the support team, on the new server")
    phone.submit(phone.button("Create token", form))
    expect(phone.main.locator("#new-token-secret")).to_be_visible()
    phone.assert_fits_the_width()


def test_the_settings_page_with_its_history_fits_a_phone(phone):
    phone.open("/settings")
    phone.field("instance_id").fill("3C0A1B2C3D4E5F60718293A4B5C6D7E8")
    phone.field("instance_token").fill("F1E2D3C4B5A69788796A5B4C3D2E1F00")
    phone.field("public_url").fill("https://painel-de-atendimento.example.com.br")
    phone.submit(phone.button("Save"))
    expect(phone.main.locator("tbody tr").first).to_be_visible()
    phone.assert_fits_the_width()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/?view=callbacks",
        "/search?phone=554499999999",
        # The failure's choice, with its longest labels, joins the form.
        "/search?state=failed&category=shadow-ban",
    ],
)
def test_the_feed_and_search_fit_a_phone(phone, path):
    phone.open(path)
    expect(phone.main.locator("tbody tr").first).to_be_visible()
    phone.assert_fits_the_width()


def test_the_header_and_its_account_menu_fit_a_phone(reader):
    # Portuguese, whose longer links wrap the header onto more lines.
    phone = reader(viewport=PHONE_VIEWPORT)
    phone.open("/")
    phone.assert_fits_the_width()
    phone.account_menu.click()
    menu = phone.page.locator(".account-menu-items")
    expect(menu).to_be_visible()
    box = menu.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE_VIEWPORT["width"], box
    phone.assert_fits_the_width()
