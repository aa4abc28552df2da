"""The settings page in headless Chromium, with a fake Z-API on 127.0.0.1."""

import re

import pytest
import requests
from playwright.sync_api import expect
from pytest_httpserver import HTTPServer

from .browser import LOCAL_HOST, Account, require_chromium, visitor_factory
from .support import SEED, TOKEN, create_user_with_cli, start_server, stop_server

pytestmark = pytest.mark.server

require_chromium()

ADMIN = Account("ana", "ana's long password")
INSTANCE_ID = "3C9E1A2B4D5F60718293A4B5C6D7E8F9"
INSTANCE_TOKEN = "A1B2C3D4E5F6A7B8C9D0E1F2"
CLIENT_TOKEN = "F0123456789abcdefABCDEF0123456789"
PUBLIC_URL = "https://dash.example.com"
WEBHOOK_URL = f"{PUBLIC_URL}/webhooks/{TOKEN}"
INSTANCE_PATH = f"/instances/{INSTANCE_ID}/token/{INSTANCE_TOKEN}"
DELIVERY_PATH = f"{INSTANCE_PATH}/update-webhook-delivery"
# Every endpoint "Save and apply" calls: the webhooks and notify-sent-by-me.
UPDATES = re.compile(rf"{re.escape(INSTANCE_PATH)}/update-[a-z-]+")
# status.js asks /api/status every 5 s; this leaves room for a slow machine.
LIVE_UPDATE_MS = 30_000


@pytest.fixture(scope="module")
def zapi():
    """A fake Z-API listening on 127.0.0.1 only (not "localhost", which may be ::1 too)."""
    fake = HTTPServer(host=LOCAL_HOST, port=0)
    fake.start()
    yield fake
    fake.clear()
    fake.stop()


@pytest.fixture
def fake_zapi(zapi):
    """The fake Z-API with no expectation or log left from an earlier test."""
    zapi.clear()
    yield zapi
    zapi.clear()


@pytest.fixture(scope="module")
def server(tmp_path_factory, zapi):
    """A real server whose Z-API is the fake, with the admin created by the CLI."""
    zapi_base = zapi.url_for("").rstrip("/")
    assert zapi_base.startswith(f"http://{LOCAL_HOST}:"), zapi_base
    running = start_server(
        tmp_path_factory.mktemp("settings-server"),
        "--workers",
        "2",
        "--threads",
        "8",
        env={"DASHBOARD_ZAPI_BASE_URL": zapi_base},
    )
    try:
        output = create_user_with_cli(running.data_dir, ADMIN.username, ADMIN.password, "admin")
        assert f"Created admin {ADMIN.username}." in output
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def admin(server, browser):
    """The admin, signed in (en-US) in a fresh browser context."""
    open_visitor, close_all = visitor_factory(browser)
    me = open_visitor(server.base_url, locale="en-US")
    me.sign_in(ADMIN)
    yield me
    close_all()


def save_and_apply(me) -> None:
    """Fill the settings form and press "Save and apply"."""
    me.open("/settings")
    me.field("instance_id").fill(INSTANCE_ID)
    me.field("instance_token").fill(INSTANCE_TOKEN)
    me.field("client_token").fill(CLIENT_TOKEN)
    me.field("public_url").fill(PUBLIC_URL)
    me.submit(me.button("Save and apply"))
    expect(me.page).to_have_url(me.url("/settings"))


def callback_line(me):
    return me.main.locator("[data-callback-status]")


def newest_change(me):
    """The top row of the history table (newest first)."""
    return me.main.get_by_role("table").locator("tbody tr").first


def test_apply_then_the_first_callback_shows_without_reloading(server, admin, fake_zapi):
    fake_zapi.expect_oneshot_request(
        DELIVERY_PATH,
        method="PUT",
        headers={"Client-Token": CLIENT_TOKEN},
        json={"value": WEBHOOK_URL},
    ).respond_with_json({"value": True})
    fake_zapi.expect_request(UPDATES, method="PUT").respond_with_json({"value": True})

    save_and_apply(admin)
    fake_zapi.check_assertions()
    assert len(fake_zapi.log) == 6  # five webhooks and notify-sent-by-me
    expect(admin.status("Z-API accepted the webhook address")).to_be_visible()
    expect(callback_line(admin)).to_contain_text("Waiting for the first callback")
    expect(newest_change(admin)).to_contain_text("Apply")
    navigations = []
    admin.page.on("framenavigated", lambda frame: navigations.append(frame.url))

    answer = requests.post(server.webhook_url, json=SEED, timeout=30)
    assert answer.status_code == 200, answer.text

    expect(callback_line(admin)).to_contain_text(
        re.compile(r"Last callback received \d+ s ago"), timeout=LIVE_UPDATE_MS
    )
    assert navigations == []  # status.js updated the line; the page was not reloaded
    admin.assert_clean()


def test_a_refused_client_token_is_an_alert_and_in_the_history(admin, fake_zapi):
    fake_zapi.expect_request(UPDATES, method="PUT").respond_with_json(
        {"error": "Client-Token X not allowed"}, status=403
    )

    save_and_apply(admin)
    alert = admin.main.get_by_role("alert")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("Client-Token")
    expect(alert).to_contain_text("Z-API did not accept the Client-Token")
    expect(admin.main.get_by_role("status").filter(has_text="Z-API accepted")).to_have_count(0)

    row = newest_change(admin)
    expect(row).to_contain_text("Apply")
    expect(row).to_contain_text(ADMIN.username)
    expect(row).to_contain_text("Z-API did not accept the Client-Token")
    expect(row).to_have_class(re.compile(r"\bdelivery-failed\b"))
    assert CLIENT_TOKEN not in admin.page.content()
    admin.assert_clean()


def test_the_webhook_url_is_revealed_only_on_click(admin, fake_zapi):
    fake_zapi.expect_request(UPDATES, method="PUT").respond_with_json({"value": True})
    save_and_apply(admin)

    served = admin.open("/settings").text()
    assert TOKEN not in served
    assert TOKEN not in admin.page.content()
    shown = admin.main.locator("[data-webhook-url]")
    expect(shown).to_have_text(f"{PUBLIC_URL}/webhooks/••••••••")

    with admin.page.expect_response(lambda r: r.url == admin.url("/settings/webhook-url")):
        admin.button("Reveal").click()
    expect(shown).to_have_text(WEBHOOK_URL)
    admin.assert_clean()


@pytest.mark.parametrize("path", ["/settings", "/"])
def test_no_console_error_or_csp_violation(admin, fake_zapi, path):
    # Applied settings give /settings its callback line, hence status.js something to do.
    fake_zapi.expect_request(UPDATES, method="PUT").respond_with_json({"value": True})
    save_and_apply(admin)
    # Both pages load status.js; wait for its first /api/status answer before checking.
    with admin.page.expect_response(lambda r: r.url == admin.url("/api/status")) as polled:
        admin.open(path)
    assert polled.value.status == 200
    expect(callback_line(admin)).to_contain_text(
        re.compile(r"Waiting for the first callback|Last callback received \d+ s ago")
    )
    if path == "/settings":
        expect(admin.button("Reveal")).to_be_visible()  # settings.js ran and unhid it
    margin = admin.page.evaluate("getComputedStyle(document.body).marginTop")
    assert margin == "0px", f"style.css did not apply on {path}"
    admin.assert_clean()
    assert admin.problems == []
