"""End to end in headless Chromium (Playwright) against a real `zapi-dashboard serve`."""

import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from .browser import Account, require_chromium, visitor_factory
from .support import create_user_with_cli, start_server, stop_server, wait_until

pytestmark = pytest.mark.server

require_chromium()

SETUP_LINK = re.compile(
    r"No account exists yet\. Create the first admin \(link valid 24 h, once\): (\S+)"
)
ADMIN = Account("ana", "ana's long password")
BANNER_TEXT = "This connection is not private"


@pytest.fixture
def visitor(browser):
    """Opens visitors (a fresh browser context each) and closes them after the test."""
    open_visitor, close_all = visitor_factory(browser)
    yield open_visitor
    close_all()


def create_user(server, account: Account, role: str) -> None:
    """Add an account with the CLI, on the server's database."""
    output = create_user_with_cli(server.data_dir, account.username, account.password, role)
    assert f"Created {role} {account.username}." in output


@pytest.fixture(scope="module")
def admin(server) -> Account:
    """The admin of the shared server, created with `zapi-dashboard create-user`."""
    create_user(server, ADMIN, "admin")
    return ADMIN


@pytest.fixture
def unclaimed_server(tmp_path_factory):
    """A server of its own, with no account yet, so its setup link is still valid."""
    running = start_server(tmp_path_factory.mktemp("unclaimed"), "--workers", "1", "--threads", "8")
    yield running
    stop_server(running)


def setup_link(server) -> str:
    found = wait_until(lambda: SETUP_LINK.search(server.log()), message="the setup link")
    return found.group(1)


def test_first_run_setup_link_creates_the_admin_once(unclaimed_server, visitor):
    link = setup_link(unclaimed_server)
    assert link.startswith(f"{unclaimed_server.base_url}/setup/")

    founder = visitor(unclaimed_server.base_url)
    founder.open(link)  # no console error or CSP violation on the setup page either
    expect(founder.main.get_by_role("heading", name="Create the first admin")).to_be_visible()

    # A typo in the confirmation keeps the link usable.
    founder.field("username").fill("Founder")
    founder.field("password").fill("founder's password")
    founder.field("confirm").fill("founders password")
    founder.submit(founder.button("Create admin"))
    expect(founder.alert("The passwords differ.")).to_be_visible()

    founder.field("password").fill("founder's password")
    founder.field("confirm").fill("founder's password")
    founder.submit(founder.button("Create admin"))
    expect(founder.page).to_have_url(unclaimed_server.base_url + "/")
    expect(founder.status("Welcome! Your admin account is ready.")).to_be_visible()
    expect(founder.account_menu).to_have_text("founder")
    founder.account_menu.click()
    expect(founder.page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()

    # The link worked once: now it is not found, signed in or not.
    founder.open(link, status=404)
    expect(founder.alert("Not found")).to_be_visible()
    stranger = visitor(unclaimed_server.base_url)
    stranger.open(link, status=404)
    expect(stranger.field("password")).to_have_count(0)


def test_sign_out_then_sign_in_again(server, admin, visitor):
    me = visitor(server.base_url)
    me.sign_in(admin)
    me.sign_out()
    expect(me.status("You are signed out.")).to_be_visible()

    me.open("/")
    me.expect_sent_to_login("/")

    me.fill_login(Account(admin.username, "not the password"))
    me.submit(me.button("Sign in"))
    expect(me.alert("Wrong username or password.")).to_have_text("Wrong username or password.")
    me.expect_sent_to_login("/")

    me.sign_in(admin)  # back on the page it asked for: /
    me.open("/account")
    expect(me.main).to_contain_text(f"Signed in as {admin.username} (admin).")


def test_a_viewer_has_no_users_page_and_no_users_link(server, admin, visitor):
    boss = visitor(server.base_url)
    boss.sign_in(admin)
    expect(boss.nav.get_by_role("link", name="Users", exact=True)).to_be_visible()
    viewer_account = Account("vicente", "vicente's password")
    boss.add_user(viewer_account, "viewer")

    viewer = visitor(server.base_url)
    viewer.sign_in(viewer_account)
    expect(viewer.nav.get_by_role("link", name="Live", exact=True)).to_be_visible()
    expect(viewer.nav.get_by_role("link", name="Users", exact=True)).to_have_count(0)

    viewer.open("/users", status=403)
    expect(viewer.alert("403 · Not allowed")).to_be_visible()
    expect(viewer.main.get_by_role("table")).to_have_count(0)


def test_admin_manages_an_account_on_the_users_page(server, admin, visitor):
    boss = visitor(server.base_url)
    boss.sign_in(admin)
    boss.open("/users")
    add_form = boss.form_with_button("Add")

    # Invalid input: the form comes back with the error next to the field.
    boss.field("username", add_form).fill("too-short")
    boss.field("password", add_form).fill("short")
    boss.submit(boss.button("Add", add_form))
    expect(boss.alert("A password needs at least 10 characters.")).to_be_visible()
    expect(boss.field("password", add_form)).to_have_attribute("aria-invalid", "true")
    expect(boss.user_row("too-short")).to_have_count(0)

    vera = Account("vera", "vera's first password")
    boss.add_user(vera, "viewer")
    boss.field("username", add_form).fill(vera.username)
    boss.field("password", add_form).fill("another long password")
    boss.submit(boss.button("Add", add_form))
    expect(boss.alert("This username is already taken.")).to_be_visible()

    # The only admin cannot disable themselves.
    boss.submit(boss.button("Disable", boss.user_row(admin.username)))
    expect(boss.alert("The last admin cannot be disabled or lose the admin role.")).to_be_visible()

    viewer = visitor(server.base_url)
    viewer.sign_in(vera)

    # Disabled: the open session ends on its next page.
    session_cookies = viewer.context.cookies()
    boss.submit(boss.button("Disable", boss.user_row(vera.username)))
    expect(boss.status(f"Account {vera.username} updated.")).to_be_visible()
    expect(boss.user_row(vera.username)).to_contain_text("Disabled")
    viewer.open("/")
    viewer.expect_sent_to_login("/")

    # Enabled again: vera can sign in...
    boss.submit(boss.button("Enable", boss.user_row(vera.username)))
    expect(boss.status(f"Account {vera.username} updated.")).to_be_visible()
    expect(boss.user_row(vera.username)).to_contain_text("Active")
    # ...but the session open before she was disabled stays ended, even with its cookie.
    old_session = visitor(server.base_url)
    old_session.context.add_cookies(session_cookies)
    old_session.open("/")
    old_session.expect_sent_to_login("/")
    viewer.sign_in(vera)
    expect(viewer.nav.get_by_role("link", name="Users", exact=True)).to_have_count(0)

    # Promoted to admin: her next page has the Users link; then back to viewer.
    for role, has_users_link in (("admin", 1), ("viewer", 0)):
        row = boss.user_row(vera.username)
        row.get_by_role("combobox").select_option(role)
        boss.submit(boss.button("Change role", row))
        expect(boss.status(f"Account {vera.username} updated.")).to_be_visible()
        expect(boss.user_row(vera.username).get_by_role("combobox")).to_have_value(role)
        viewer.open("/")
        users_link = viewer.nav.get_by_role("link", name="Users", exact=True)
        expect(users_link).to_have_count(has_users_link)

    # A too-short new password: the browser refuses it (minlength), and so does the server.
    new_password = boss.user_row(vera.username).get_by_placeholder("New password")
    new_password.fill("short")
    assert new_password.evaluate("input => input.validity.tooShort")
    new_password.evaluate("input => { input.form.noValidate = true; }")
    boss.submit(boss.button("Reset password", boss.user_row(vera.username)))
    expect(boss.alert("A password needs at least 10 characters.")).to_be_visible()

    # Reset: her session ends, the old password stops working, the new one works.
    vera_again = Account(vera.username, "vera's second password")
    row = boss.user_row(vera.username)
    row.get_by_placeholder("New password").fill(vera_again.password)
    boss.submit(boss.button("Reset password", row))
    expect(boss.status(f"Account {vera.username} updated.")).to_be_visible()
    viewer.open("/")
    viewer.expect_sent_to_login("/")
    viewer.fill_login(vera)
    viewer.submit(viewer.button("Sign in"))
    expect(viewer.alert("Wrong username or password.")).to_be_visible()
    viewer.sign_in(vera_again)


def test_an_admin_finds_a_refused_webhook_request_from_the_navigation(server, admin, visitor):
    token = server.webhook_url.rsplit("/", 1)[1]
    refused = requests.post(
        server.webhook_url,
        data=f'{{"type": "DeliveryCallback", "phone": "5544999999999", "echo": "{token}"',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert refused.status_code == 400
    me = visitor(server.base_url)
    me.sign_in(admin)
    me.nav.get_by_role("link", name="Refused", exact=True).click()
    expect(me.main.get_by_role("heading", level=1)).to_have_text("Refused webhook requests")
    row = me.main.locator("tbody tr").first
    expect(row).to_contain_text(refused.json()["error"])
    expect(row.locator("pre")).to_have_text(
        '{"type": "DeliveryCallback", "phone": "5544999999999", "echo": "<secret>"'
    )
    with me.page.expect_download() as download:
        row.get_by_role("link", name="Download the exact bytes").click()
    assert download.value.suggested_filename.startswith("refused-")
    assert token.encode() not in Path(download.value.path()).read_bytes()
    me.assert_clean()


@pytest.mark.parametrize(
    ("locale", "lang", "sign_in"), [("pt-BR", "pt-BR", "Entrar"), ("en-US", "en", "Sign in")]
)
def test_login_page_in_portuguese_and_english(server, visitor, locale, lang, sign_in):
    guest = visitor(server.base_url, locale=locale)
    guest.open("/login")
    expect(guest.page.locator("html")).to_have_attribute("lang", lang)
    expect(guest.main.get_by_role("heading", level=1)).to_have_text(sign_in)
    expect(guest.main.get_by_role("button", name=sign_in, exact=True)).to_be_visible()


def test_pages_have_no_csp_violation_and_no_console_error(server, admin, visitor):
    # The setup page is checked the same way in test_first_run_setup_link_creates_the_admin_once.
    me = visitor(server.base_url)
    me.open("/login")
    me.sign_in(admin)
    for path in ("/", "/users", "/refused", "/account"):
        me.open(path)
        # The stylesheet loaded under style-src 'self' (the browser's default margin is 8px).
        margin = me.page.evaluate("getComputedStyle(document.body).marginTop")
        assert margin == "0px", f"style.css did not apply on {path}"
    assert me.problems == []


def test_the_watchdog_reports_csp_violations_and_foreign_requests(server, visitor):
    # Proves the check above can fail: an inline script and a request to another host.
    guest = visitor(server.base_url)
    guest.open("/login")
    guest.page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.body.append(script);
        }"""
    )
    with pytest.raises(AssertionError, match="Content Security Policy"):
        guest.assert_clean()
    assert any(problem.startswith("CSP violation") for problem in guest.problems)
    assert guest.page.evaluate("window.inlineRan") is None

    outsider = visitor(server.base_url)
    with pytest.raises(Exception, match="ERR_BLOCKED_BY_CLIENT"):
        outsider.page.goto("http://example.com/")
    assert any("example.com" in problem for problem in outsider.problems)


def test_no_insecure_connection_banner_on_127_0_0_1(server, admin, visitor):
    # The banner does show when the same server is reached by a non-local name over http.
    html = requests.get(
        f"{server.base_url}/login", headers={"Host": "dashboard.example.com"}, timeout=30
    ).text
    assert 'class="banner banner-warning"' in html

    me = visitor(server.base_url)
    me.open("/login")
    expect(me.page.locator(".banner-warning")).to_have_count(0)
    expect(me.page.get_by_text(BANNER_TEXT)).to_have_count(0)
    me.sign_in(admin)
    expect(me.page.locator(".banner-warning")).to_have_count(0)
    expect(me.page.get_by_role("alert")).to_have_count(0)
