"""The message page in headless Chromium, on a phone's width, against a real server."""

import uuid

import pytest
import requests
from playwright.sync_api import expect

from .browser import PHONE_VIEWPORT, Account, Visitor, require_chromium
from .support import Server, create_user_with_cli, query

pytestmark = pytest.mark.server

require_chromium()

AGENT = Account("ana", "ana's long password")
MS0 = 1_777_636_800_000  # 2026-05-01 12:00 UTC


@pytest.fixture(scope="module")
def page_server(server) -> Server:
    """The module's shared server (conftest), with an account created by the CLI."""
    create_user_with_cli(server.data_dir, AGENT.username, AGENT.password, "viewer")
    return server


@pytest.fixture
def phone_visitor(browser, page_server):
    """A signed-in visitor on a phone held upright; closed after the test."""
    visitor = Visitor(browser, page_server.base_url, viewport=PHONE_VIEWPORT)
    visitor.sign_in(AGENT)
    yield visitor
    visitor.context.close()


def post(server: Server, payload: dict) -> int:
    """Store one callback through the webhook; return its id."""
    answer = requests.post(server.webhook_url, json=payload, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def a_message_that_failed_then_arrived(server: Server) -> tuple[int, list[int]]:
    """Post a long-winded message's callbacks; return its row id and the callback ids."""
    # Long unbroken ids and words, as real ones are: the page must wrap them on a phone.
    message_id = f"3EB0{uuid.uuid4().hex.upper()}{'F' * 40}"
    base = {"instanceId": "3C9F0B7A1E2D4C5B6A7980FEDCBA0123", "phone": "5544999999999"}
    callbacks = [
        {
            **base,
            "type": "DeliveryCallback",
            "messageId": message_id,
            "zaapId": "Z" + "9" * 60,
            "momment": MS0,
            "error": "Timeout on send message",
        },
        {
            **base,
            "type": "ReceivedCallback",
            "messageId": message_id,
            "fromMe": True,
            "momment": MS0,
            "text": {"message": "https://example.com/" + "pedido" * 30},
        },
        *(
            {
                **base,
                "type": "MessageStatusCallback",
                "status": word,
                "ids": [message_id],
                "momment": MS0 + seconds * 1000,
            }
            for word, seconds in (("RECEIVED", 4), ("RECEIVED", 5), ("READ", 70))
        ),
        {
            **base,
            "type": "ReceivedCallback",
            "messageId": f"reply-{uuid.uuid4().hex}",
            "fromMe": False,
            "momment": MS0 + 90_000,
            "text": {"message": "chegou " + "obrigado" * 20},
        },
    ]
    ids = [post(server, callback) for callback in callbacks]
    ((message_pk,),) = query(
        server.data_dir, "SELECT id FROM messages WHERE message_id = :id", id=message_id
    )
    return message_pk, ids


def test_the_message_page_fits_a_phone_and_shows_its_timeline(page_server, phone_visitor):
    message_pk, ids = a_message_that_failed_then_arrived(page_server)
    me = phone_visitor
    me.open(f"/messages/{message_pk}")
    expect(me.main.get_by_role("heading", level=1)).to_contain_text(f"Message #{message_pk}")

    timeline = me.main.locator("[data-timeline]")
    expect(timeline).to_be_visible()
    expect(timeline.locator("[data-step]")).to_have_count(4)
    expect(timeline.locator('[data-step="received"]')).to_contain_text(
        "Delivered 2\N{MULTIPLICATION SIGN}"
    )
    expect(timeline.locator('[data-step="failed"]')).to_be_visible()
    expect(me.main.locator("[data-failure-then]")).to_be_visible()
    verdict = me.main.locator("[data-verdict]")
    expect(verdict).to_contain_text("Read at ")
    expect(verdict.locator("time").first).to_have_attribute("datetime", "2026-05-01T12:01:10Z")
    me.assert_fits_the_width()

    # A callback's raw JSON, opened, wraps inside the card too.
    raw = me.main.locator(f'tr[data-callback="{ids[1]}"] details')
    raw.locator("summary").click()
    expect(raw.locator("pre.raw-json")).to_contain_text("pedidopedido")
    me.assert_fits_the_width()

    # From a callback to its page, and back to the message it is about.
    me.submit(me.main.locator(f'tr[data-callback="{ids[0]}"] a'))
    assert me.page.url == me.url(f"/deliveries/{ids[0]}")
    me.submit(me.main.locator("[data-message-link]"))
    assert me.page.url == me.url(f"/messages/{message_pk}")
    me.assert_clean()
