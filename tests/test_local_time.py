"""Every server-rendered time is one <time> element, UTC text the page's script localises."""

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from flask_babel import force_locale
from sqlalchemy import select

from dashboard.accounts import tokens
from dashboard.extensions import db
from dashboard.i18n import time_element
from dashboard.models import User
from dashboard.settings import store as settings_store

from .support import FAILED, STATUS, signed_in_client, store

TIME = re.compile(r'<time datetime="([^"]+)" title="([^"]+)"(?: data-field="\w+")?>([^<]*)</time>')
MOMENT = datetime(2026, 4, 29, 20, 21, 31, 684000, tzinfo=UTC)


def test_a_time_is_utc_text_with_its_iso_value_and_the_utc_on_hover(app):
    with app.test_request_context(), force_locale("en"):
        english = str(time_element(MOMENT))
    with app.test_request_context(), force_locale("pt_BR"):
        portuguese = str(time_element(MOMENT))
    assert english == (
        '<time datetime="2026-04-29T20:21:31.684000Z" title="2026-04-29 20:21:31 UTC">'
        "April 29, 2026, 8:21:31\u202fPM UTC</time>"
    )
    assert TIME.fullmatch(portuguese).groups() == (
        "2026-04-29T20:21:31.684000Z",
        "2026-04-29 20:21:31 UTC",
        "29 de abril de 2026 20:21:31 UTC",
    )


def test_a_time_in_another_zone_or_with_none_is_shown_in_utc(app):
    with app.test_request_context(), force_locale("pt_BR"):
        brasilia = str(time_element(MOMENT.astimezone(timezone(timedelta(hours=-3)))))
        naive = str(time_element(MOMENT.replace(tzinfo=None)))
    assert brasilia == naive
    assert TIME.fullmatch(brasilia).group(1) == "2026-04-29T20:21:31.684000Z"


def times(page: str) -> list[tuple[str, str, str]]:
    return TIME.findall(page)


@pytest.fixture
def ana(app):
    """An English client signed in as the admin "ana"."""
    return signed_in_client(app, "ana", "admin")


def test_search_and_detail_pages_show_every_time_as_a_time_element(ana):
    first = store(FAILED).id
    store({**STATUS, "ids": [FAILED["messageId"]]})
    search = ana.get("/search?phone=554499999999").get_data(as_text=True)
    # The row's first seen and latest news, and the verdict's time in the row and on the card.
    assert len(times(search)) == 4
    detail = ana.get(f"/deliveries/{first}").get_data(as_text=True)
    # Stamped by Z-API, received here, and the related status's row.
    found = times(detail)
    assert len(found) == 3
    assert found[0][:2] == ("2026-04-29T20:21:31.684000Z", "2026-04-29 20:21:31 UTC")
    assert all(text.endswith(" UTC") for _, _, text in found)
    assert "Hover over a time to see it in UTC." in detail


def test_users_account_and_settings_pages_show_their_times_as_time_elements(app, ana):
    with db.writing() as session:
        user = session.scalar(select(User).where(User.username == "ana"))
        token, _ = tokens.create(session, user, "crm")
        token.last_used_at = MOMENT
        settings_store.record_change(session, "ana", "save", True, "Saved.")
    users = ana.get("/users").get_data(as_text=True)
    assert len(times(users)) == 1  # ana's created time
    account = ana.get("/account").get_data(as_text=True)
    assert [title for _, title, _ in times(account)][1] == "2026-04-29 20:21:31 UTC"
    assert len(times(account)) == 2  # the token's created and last used times
    settings = ana.get("/settings").get_data(as_text=True)
    assert len(times(settings)) == 1  # the history line


def test_every_page_loads_the_time_script(ana):
    for path in ("/", "/search", "/users", "/account", "/settings"):
        page = ana.get(path).get_data(as_text=True)
        assert '<script src="/static/time.js" defer></script>' in page, path
