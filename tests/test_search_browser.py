"""The search and detail pages in headless Chromium against a real `zapi-dashboard serve`."""

import re
import uuid

import pytest
import requests
from playwright.sync_api import expect

from .browser import (
    PHONE_VIEWPORT,
    TIMEOUT_MS,
    Account,
    Visitor,
    require_chromium,
    visitor_factory,
)
from .support import SEED, Server, create_user_with_cli

pytestmark = pytest.mark.server

require_chromium()

ADMIN = Account("ana", "ana's long password")
TYPED = "+55 (44) 9 9999-9999"


@pytest.fixture(scope="module")
def search_server(server) -> Server:
    """The module's shared server (conftest), with an admin created by the CLI."""
    create_user_with_cli(server.data_dir, ADMIN.username, ADMIN.password, "admin")
    return server


@pytest.fixture
def visitor(browser):
    """Opens visitors (a fresh browser context each) and closes them after the test."""
    open_visitor, close_all = visitor_factory(browser)
    yield open_visitor
    close_all()


def post(server: Server, **fields) -> tuple[int, str]:
    """Store a DeliveryCallback through the webhook; return its id and its messageId."""
    message_id = f"search-{uuid.uuid4().hex}"
    answer = requests.post(
        server.webhook_url, json={**SEED, "messageId": message_id, **fields}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["id"], message_id


def test_a_number_typed_another_way_finds_the_row_and_opens_its_detail(search_server, visitor):
    stored, message_id = post(search_server, phone="554499999999")
    me = visitor(search_server.base_url)
    me.sign_in(ADMIN)
    me.open("/")
    me.submit(me.nav.get_by_role("link", name="Search", exact=True))
    expect(me.main.get_by_role("heading", level=1)).to_have_text("Search messages")
    me.submit(me.main.get_by_role("link", name="Every callback", exact=True))
    expect(me.main.get_by_role("heading", level=1)).to_have_text("Search callbacks")

    me.main.get_by_label("Phone", exact=True).fill(TYPED)
    me.submit(me.button("Search"))
    row = me.main.locator(f'tr.delivery[data-id="{stored}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text(message_id)
    expect(row.locator('[data-field="phone"]')).to_have_text("+55 44 9999-9999")
    expect(me.main.get_by_label("Phone", exact=True)).to_have_value(TYPED)

    me.submit(row.locator("[data-detail-link]"))
    assert me.page.url == me.url(f"/deliveries/{stored}")
    expect(me.main.get_by_role("heading", level=1)).to_contain_text(f"Callback #{stored}")
    raw = me.main.locator("pre.raw-json")
    expect(raw).to_contain_text('"phone": "554499999999"')
    expect(raw).to_contain_text(f'"messageId": "{message_id}"')

    # Back to the phone's messages: this callback's message is there, with its verdict.
    me.submit(me.main.get_by_role("link", name="← Search this phone"))
    expect(me.main.get_by_label("Phone", exact=True)).to_have_value("554499999999")
    expect(me.main.locator("tr.message")).to_have_count(1)
    expect(me.main.locator("tr.message")).to_contain_text("Handed to WhatsApp at ")


def test_text_with_no_digits_gets_a_message_beside_the_field(search_server, visitor):
    me = visitor(search_server.base_url)
    me.sign_in(ADMIN)
    me.open("/search")
    me.main.get_by_label("Phone", exact=True).fill("abc")
    # The form sends every field; the page it gets back answers 400, as it should.
    sent = "/search?phone=abc&messageId=&state=&instance=&since=&until="
    me.expected_statuses[me.url(sent)] = 400
    me.submit(me.button("Search"))
    expect(me.alert("Type a phone number with digits")).to_be_visible()
    expect(me.main.get_by_label("Phone", exact=True)).to_have_attribute("aria-invalid", "true")


def test_a_live_row_links_to_its_detail_page(search_server, visitor):
    me = visitor(search_server.base_url)
    me.sign_in(ADMIN)
    me.open("/?view=callbacks")  # the feed's list of every callback; "/" lists messages
    expect(me.main.locator("[data-connection]")).to_have_text("Live")
    stored, message_id = post(search_server)
    link = me.main.locator(f'tr.delivery[data-id="{stored}"] [data-detail-link]')
    expect(link).to_have_attribute("href", f"/deliveries/{stored}")
    me.submit(link)
    expect(me.main.locator("pre.raw-json")).to_contain_text(message_id)


def test_the_search_works_without_javascript(search_server, browser):
    stored, message_id = post(search_server, phone="5511988887777")
    context = browser.new_context(
        java_script_enabled=False, base_url=search_server.base_url, locale="en-US"
    )
    try:
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.goto("/login")
        page.locator("[name=username]").fill(ADMIN.username)
        page.locator("[name=password]").fill(ADMIN.password)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(search_server.base_url + "/")

        page.goto("/search")
        page.get_by_label("Phone", exact=True).fill("(11) 8888-7777")  # no ninth digit, no country
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page).to_have_url(re.compile(r"/search\?phone=%2811%29\+8888-7777"))
        expect(page.locator("section.verdict-card")).to_contain_text("Handed to WhatsApp at ")
        expect(page.locator("tr.message")).to_have_count(1)

        page.get_by_role("link", name="Every callback", exact=True).click()
        page.get_by_label("Failed sends only").uncheck()
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page).to_have_url(re.compile(r"/search\?view=callbacks&phone=%2811%29\+8888-7777"))
        row = page.locator(f'tr.delivery[data-id="{stored}"]')
        expect(row).to_contain_text(message_id)
        expect(page.get_by_role("main").get_by_role("heading", level=2)).to_have_text("1 match")

        # A pasted id opens its message, with no script to help.
        page.goto("/search")
        page.get_by_label("Message ID or zaapId", exact=True).fill(message_id)
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page).to_have_url(re.compile(r"/messages/\d+$"))
    finally:
        context.close()


def test_the_verdict_card_answers_on_a_phone_and_the_lists_fit_its_width(search_server, browser):
    _, message_id = post(search_server, phone="5521977776666", momment=1777494000000)
    answer = requests.post(
        search_server.webhook_url,
        json={
            "instanceId": SEED["instanceId"],
            "status": "RECEIVED",
            "ids": [message_id],
            "momment": 1777494060000,
            "phone": "5521977776666",
            "type": "MessageStatusCallback",
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    me = Visitor(browser, search_server.base_url, viewport=PHONE_VIEWPORT)
    try:
        me.sign_in(ADMIN)
        me.open("/search")
        me.main.get_by_label("Phone", exact=True).fill("21 97777-6666")
        me.submit(me.button("Search"))
        card = me.main.locator("section.verdict-card")
        expect(card.get_by_role("heading", level=2)).to_have_text(
            "Latest message to +55 21 97777-6666"
        )
        expect(card).to_contain_text("On the customer's phone since ")
        expect(card.locator(".verdict time")).to_have_attribute("datetime", "2026-04-29T20:21:00Z")
        expect(card).to_contain_text("“not read” may mean they read it")
        row = me.main.locator("tr.message")
        expect(row).to_have_count(1)
        expect(row.locator('[data-state-badge="received"]')).to_contain_text("Delivered")
        me.assert_fits_the_width()
        me.assert_clean()
        expect(card.get_by_role("link", name="Open this message")).to_have_attribute(
            "href", re.compile(r"^/messages/\d+$")
        )
        # The list of every callback turns its rows into cards too.
        me.submit(me.main.get_by_role("link", name="Every callback", exact=True))
        expect(me.main.locator("tr.delivery")).to_have_count(2)  # the send and its status
        me.assert_fits_the_width()
        me.assert_clean()
    finally:
        me.context.close()
