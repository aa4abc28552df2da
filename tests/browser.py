"""Helpers for the browser tests: headless Chromium and a tab that watches for trouble.

A :class:`Visitor` is one browser context (its own cookies) with one page. While it browses
it records every console error, uncaught page error, Content-Security-Policy violation and
any request that would leave 127.0.0.1 (those are aborted, never sent). Its ``open`` and
``submit`` methods fail the test as soon as a page shows any of them.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Browser, Locator, Page, Request, Response, Route, expect
from playwright.sync_api import Error as PlaywrightError

from .support import missing

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_OPTIONS = {
    "executable_path": str(CHROMIUM),
    "headless": True,
    "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
}
TIMEOUT_MS = 30_000
LOCAL_HOST = "127.0.0.1"
# A phone held upright: the narrowest screen every page must fit without sideways scrolling.
PHONE_VIEWPORT = {"width": 390, "height": 844}

# Init scripts run through the devtools protocol, outside the page's CSP.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__reportCspViolation(
    `${event.violatedDirective} blocked ${event.blockedURI || "(inline)"}`
    + ` in ${event.sourceFile || event.documentURI}:${event.lineNumber}`
  );
});
"""
# What Chromium logs when a document answers with an error status the test asked for.
FAILED_RESOURCE = re.compile(
    r"Failed to load resource: the server responded with a status of (\d+)"
)


@dataclass(frozen=True)
class Account:
    """A username and its password."""

    username: str
    password: str


def leaves_localhost(url: str) -> bool:
    """Whether a request to ``url`` would go over the network to anyone but 127.0.0.1."""
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob", "about") and parts.hostname != LOCAL_HOST


class Visitor:
    """One person at one browser: a fresh context (cookies, language) and its page."""

    def __init__(self, browser: Browser, base_url: str, locale: str = "en-US", **context_options):
        self.base_url = base_url
        self.problems: list[str] = []
        self.expected_statuses: dict[str, int] = {}
        self.context = browser.new_context(locale=locale, base_url=base_url, **context_options)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.set_default_navigation_timeout(TIMEOUT_MS)
        self.context.expose_binding("__reportCspViolation", self._csp_violation)
        self.context.add_init_script(CSP_LISTENER)
        self.context.route(leaves_localhost, self._block)
        self.context.on("request", self._check_request)
        self.page: Page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    # -- what the watchdog records -------------------------------------------------------

    def _csp_violation(self, source, text: str) -> None:
        self.problems.append(f"CSP violation on {source['frame'].url}: {text}")

    def _block(self, route: Route) -> None:
        self.problems.append(f"request outside {LOCAL_HOST} blocked: {route.request.url}")
        route.abort("blockedbyclient")

    def _check_request(self, request: Request) -> None:
        if leaves_localhost(request.url):
            self.problems.append(f"request outside {LOCAL_HOST}: {request.url}")

    def _console(self, message) -> None:
        if message.type != "error":
            return
        failed = FAILED_RESOURCE.match(message.text)
        url = message.location.get("url", "")
        if failed and self.expected_statuses.get(url) == int(failed.group(1)):
            return  # the error page the test asked for
        self.problems.append(f"console error at {url}: {message.text}")

    def assert_clean(self) -> None:
        """Fail if anything went wrong on the pages seen so far."""
        self.page.evaluate("0")  # a round trip, so every earlier event has arrived
        assert not self.problems, "\n".join(self.problems)

    # -- browsing ------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on the server."""
        return self.base_url + path

    def open(self, path: str, status: int = 200) -> Response:
        """Go to ``path`` (or a full URL), check the final status and the watchdog."""
        target = path if path.startswith("http") else self.url(path)
        if status != 200:
            self.expected_statuses[target] = status
        try:
            response = self.page.goto(target)
        except PlaywrightError as exc:
            if "net::ERR_ABORTED" not in str(exc):
                raise
            # The page went elsewhere by itself meanwhile: the live feed, told that its
            # session ended, goes to the login page. Going to the target is still asked.
            response = self.page.goto(target)
        assert response is not None
        assert response.status == status, f"{target} answered {response.status}"
        self.assert_clean()
        return response

    def assert_fits_the_width(self) -> None:
        """Fail if the page scrolls sideways or any element sticks out past its right edge."""
        overflow = self.page.evaluate(
            """() => {
                const width = document.documentElement.clientWidth;
                const wide = [...document.querySelectorAll("body *")].filter((element) => {
                    const box = element.getBoundingClientRect();
                    return box.width > 0 && box.right > width + 1;
                });
                return {
                    scroll: document.documentElement.scrollWidth - width,
                    wide: wide.slice(0, 5).map((e) => e.outerHTML.slice(0, 120)),
                };
            }"""
        )
        assert overflow["scroll"] <= 0 and not overflow["wide"], overflow

    def submit(self, button: Locator) -> None:
        """Click ``button``, wait for the page it leads to, and check the watchdog."""
        main_frame = self.page.main_frame
        with self.page.expect_event("framenavigated", predicate=lambda f: f == main_frame):
            button.click()
        self.page.wait_for_load_state()
        self.assert_clean()

    def field(self, name: str, scope: Locator | None = None) -> Locator:
        """The form input called ``name`` (username, password, confirm...)."""
        return (scope or self.main).locator(f"[name={name}]")

    def button(self, name: str, scope: Locator | None = None) -> Locator:
        """The button labelled ``name``."""
        return (scope or self.main).get_by_role("button", name=name, exact=True)

    def form_with_button(self, name: str) -> Locator:
        """The form whose submit button is labelled ``name``."""
        button = self.page.get_by_role("button", name=name, exact=True)
        return self.main.locator("form").filter(has=button)

    @property
    def main(self) -> Locator:
        """The page's main content."""
        return self.page.get_by_role("main")

    @property
    def nav(self) -> Locator:
        """The site navigation bar."""
        return self.page.get_by_role("navigation", name="Main")

    @property
    def account_menu(self) -> Locator:
        """The username in the header that opens the account menu."""
        return self.page.locator("details.account-menu > summary")

    def alert(self, text: str) -> Locator:
        """An element with role="alert" inside the main content that contains ``text``."""
        return self.main.get_by_role("alert").filter(has_text=text)

    def status(self, text: str) -> Locator:
        """A status message (role="status") that contains ``text``."""
        return self.main.get_by_role("status").filter(has_text=text)

    # -- the usual journeys --------------------------------------------------------------

    def sign_in(self, account: Account, expect_path: str = "/") -> None:
        """Sign in through the login form and land on ``expect_path``."""
        if not self.page.url.startswith(self.url("/login")):
            self.open("/login")
        self.fill_login(account)
        self.submit(self.button("Sign in"))
        expect(self.page).to_have_url(self.url(expect_path))
        expect(self.account_menu).to_have_text(account.username)

    def fill_login(self, account: Account) -> None:
        """Type ``account`` into the login form."""
        self.field("username").fill(account.username)
        self.field("password").fill(account.password)

    def sign_out(self) -> None:
        """Open the account menu and press "Sign out"."""
        self.account_menu.click()
        sign_out = self.page.get_by_role("button", name="Sign out", exact=True)
        expect(sign_out).to_be_visible()
        self.submit(sign_out)
        expect(self.page).to_have_url(self.url("/login"))

    def expect_sent_to_login(self, next_path: str = "/") -> None:
        """Check the browser ended on the login page, which will return to ``next_path``."""
        expect(self.page).to_have_url(re.compile(re.escape(self.url("/login?next="))))
        query = urlsplit(self.page.url).query
        assert parse_qs(query) == {"next": [next_path]}, self.page.url
        expect(self.account_menu).to_have_count(0)

    def user_row(self, username: str) -> Locator:
        """The row of ``username`` on the Users page."""
        cell = self.page.get_by_role("cell", name=username, exact=True)
        return self.main.get_by_role("row").filter(has=cell)

    def add_user(self, account: Account, role: str = "viewer") -> None:
        """Add ``account`` through the form on the Users page."""
        if self.page.url != self.url("/users"):
            self.open("/users")
        form = self.form_with_button("Add")
        self.field("username", form).fill(account.username)
        self.field("password", form).fill(account.password)
        self.field("role", form).select_option(role)
        self.submit(self.button("Add", form))
        expect(self.status(f"Account {account.username} added.")).to_be_visible()
        expect(self.user_row(account.username)).to_be_visible()


def visitor_factory(browser: Browser) -> tuple[Callable[..., Visitor], Callable[[], None]]:
    """A function that opens visitors, and one that closes every visitor it opened."""
    opened: list[Visitor] = []

    def open_visitor(base_url: str, locale: str = "en-US") -> Visitor:
        visitor = Visitor(browser, base_url, locale)
        opened.append(visitor)
        return visitor

    def close_all() -> None:
        for visitor in opened:
            visitor.context.close()

    return open_visitor, close_all


def require_chromium() -> None:
    """Skip the calling test module without Chromium; in CI, where it is installed, fail."""
    if CHROMIUM.exists():
        return
    missing(f"{CHROMIUM} is missing; install Debian's chromium package to run the browser tests")
