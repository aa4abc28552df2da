"""The search page and the detail page, through Flask's test client on a real database."""

import html
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from .support import FAILED, SEED, STATUS, signed_in_client, store, store_all

XSS = "<img src=x onerror=alert(1)>"
ROW_ID = re.compile(r'<tr class="delivery[^"]*" data-id="(\d+)"')
ALERT = re.compile(r'<(ul|p)\b[^>]*\bid="([^"]*)"[^>]*role="alert"[^>]*>(.*?)</\1>', re.S)
FORM_ALERT = re.compile(r'<p class="form-error" role="alert">(.*?)</p>', re.S)
TAG = re.compile(r"<[^>]+>")


def callback(n: int, phone: str = "554499999999", **extra) -> dict:
    return {**SEED, "messageId": f"M{n}", "zaapId": f"Z{n}", "phone": phone, **extra}


@pytest.fixture
def browse(any_db_app):
    """A signed-in client on SQLite and on PostgreSQL."""
    return signed_in_client(any_db_app, "ana", "admin")


@pytest.fixture
def browse_sqlite(app):
    """A signed-in client on a SQLite file only (for checks the database cannot change)."""
    return signed_in_client(app, "ana", "admin")


def page_of(client, url: str, status: int = 200, **params) -> str:
    # These tests read the list of every callback; the page lists messages without "view".
    if url.startswith("/search") and "view=" not in url:
        if params:
            params = {"view": "callbacks", **params}
        else:
            url += ("&" if "?" in url else "?") + "view=callbacks"
    response = client.get(url, query_string=params or None)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def ids(page: str) -> list[int]:
    return [int(found) for found in ROW_ID.findall(page)]


def text(fragment: str) -> str:
    return " ".join(html.unescape(TAG.sub(" ", fragment)).split())


def field_alerts(page: str) -> dict[str, str]:
    """The alerts under the form's fields, by field name."""
    return {
        element_id.removeprefix("search-").removesuffix("-errors"): text(body)
        for _, element_id, body in ALERT.findall(page)
    }


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a rel="{rel}" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def heading(page: str) -> str:
    return text(re.search(r'<h2 id="results-title">(.*?)</h2>', page, re.S).group(1))


# -- searching ---------------------------------------------------------------------------


def test_a_number_typed_any_way_finds_both_ninth_digit_forms(browse):
    twelve = store(callback(1, "554499999999")).id
    thirteen = store(callback(2, "5544999999999")).id
    store(callback(3, "554488888888"))
    for typed in (
        "+55 (44) 9 9999-9999",
        "55 44 99999-9999",
        "044 99999-9999",
        "44999999999",
        "4499999999",
        "44.9999.9999",
    ):
        page = page_of(browse, "/search", phone=typed)
        assert ids(page) == [thirteen, twelve], typed
        assert heading(page) == "2 matches"
        assert f'value="{html.escape(typed)}"' in page  # the field keeps what was typed
    # The last digits find every number that ends with them.
    assert ids(page_of(browse, "/search?phone=9999-9999")) == [thirteen, twelve]


def test_an_empty_form_shows_the_newest_callbacks(browse):
    stored = [row.id for row in store_all([callback(n) for n in range(3)])]
    page = page_of(browse, "/search")
    assert ids(page) == stored[::-1]
    assert heading(page) == "3 matches"
    assert "<h1" in page and 'role="search"' in page
    # Each row opens its detail page from its time.
    assert f'<a data-detail-link href="/deliveries/{stored[0]}">' in page


def test_filters_narrow_the_results(browse):
    ok = store(callback(1, "5544999999999")).id
    failed = store({**FAILED, "messageId": "F1", "phone": "5544999999999"}).id
    status = store({**STATUS, "ids": ["M1"]}).id
    other_instance = store(callback(4, "5544999999999", instanceId="other")).id
    assert ids(page_of(browse, "/search?failed=1")) == [failed]
    assert ids(page_of(browse, "/search?type=MessageStatusCallback")) == [status]
    assert ids(page_of(browse, "/search?instance=other")) == [other_instance]
    assert ids(page_of(browse, "/search?phone=44999999999&type=DeliveryCallback&failed=1")) == [
        failed
    ]
    today = datetime.now(UTC).date()
    everything = [other_instance, status, failed, ok]
    assert ids(page_of(browse, f"/search?since={today}&until={today}")) == everything
    assert ids(page_of(browse, f"/search?until={today - timedelta(days=1)}")) == []
    assert ids(page_of(browse, f"/search?since={today + timedelta(days=1)}")) == []


def test_the_form_shows_the_filters_it_searched_with(browse_sqlite):
    store(callback(1))
    page = page_of(
        browse_sqlite,
        "/search?phone=9999-9999&type=ReceivedCallback&failed=1&instance=inst&since=2026-01-02",
    )
    assert '<option value="ReceivedCallback" selected>' in page
    assert re.search(r'<input type="checkbox" name="failed" value="1"\s*checked', page)
    assert 'name="instance" type="text" value="inst"' in page
    assert 'name="since" type="date" value="2026-01-02"' in page
    # A type the form does not list, asked for in the URL, is kept as an option.
    page = page_of(browse_sqlite, "/search?type=SomeNewCallback")
    assert '<option value="SomeNewCallback" selected>' in page


def test_no_match_says_so(browse_sqlite):
    store(callback(1))
    page = page_of(browse_sqlite, "/search?phone=11 98888-7777")
    assert ids(page) == []
    assert heading(page) == "0 matches"
    assert "No callbacks match" in page


# -- pages -------------------------------------------------------------------------------


def test_older_and_newer_pages_keep_the_filters_and_stay_put_as_rows_arrive(browse):
    mine = [row.id for row in store_all([callback(n, "5544999999999") for n in range(5)])]
    store_all([callback(10 + n, "5511988887777") for n in range(3)])  # someone else's
    first = page_of(browse, "/search?phone=44 99999-9999&type=DeliveryCallback&limit=2")
    assert ids(first) == [mine[4], mine[3]]
    assert link(first, "prev") is None  # nothing newer than the newest

    older = link(first, "next")
    assert query(older) == {
        "phone": "44 99999-9999",
        "type": "DeliveryCallback",
        "limit": "2",
        "before": str(mine[3]),
        "view": "callbacks",
    }
    second = page_of(browse, older)
    assert ids(second) == [mine[2], mine[1]]

    # A new callback for the number does not shift the page anyone is reading.
    newest = store(callback(99, "554499999999")).id
    again = page_of(browse, older)
    assert ids(again) == [mine[2], mine[1]]
    assert heading(again) == "6 matches"

    last = page_of(browse, link(again, "next"))
    assert ids(last) == [mine[0]]
    assert link(last, "next") is None

    newer = link(again, "prev")
    assert query(newer) == {
        "phone": "44 99999-9999",
        "type": "DeliveryCallback",
        "limit": "2",
        "after": str(mine[2]),
        "view": "callbacks",
    }
    back = page_of(browse, newer)
    assert ids(back) == [mine[4], mine[3]]
    front = page_of(browse, link(back, "prev"))
    assert ids(front) == [newest]
    assert link(front, "prev") is None


def test_the_count_is_exact_up_to_a_thousand_then_more_than(browse_sqlite):
    store_all([callback(n, "5511988887777", instanceId="busy") for n in range(1001)])
    store(callback(5000, instanceId="quiet"))
    assert heading(page_of(browse_sqlite, "/search?instance=busy")) == "More than 1,000 matches"
    assert heading(page_of(browse_sqlite, "/search?instance=quiet")) == "1 match"
    page = page_of(browse_sqlite, "/search?instance=busy&limit=500")
    assert len(ids(page)) == 500


def test_exactly_a_thousand_matches_are_counted(browse_sqlite):
    store_all([callback(n, "5511988887777") for n in range(1000)])
    assert heading(page_of(browse_sqlite, "/search")) == "1,000 matches"


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ("phone=abc", "phone", "Type a phone number with digits"),
        ("phone=12", "phone", "Type at least 4 digits"),
        ("since=2026-13-01", "since", "Use a date like 2026-11-25"),
        ("until=yesterday", "until", "Use a date like 2026-11-25"),
        ("since=2026-05-02&until=2026-05-01", "until", "The end of the date range must be after"),
        ("failed=maybe", "failed", "Use 1 or 0"),
    ],
)
def test_a_bad_field_answers_400_with_the_message_under_it(browse_sqlite, params, field, message):
    store(callback(1))
    page = page_of(browse_sqlite, f"/search?{params}&type=DeliveryCallback", status=400)
    alerts = field_alerts(page)
    assert list(alerts) == [field]
    assert message in alerts[field]
    assert f'aria-describedby="search-{field}-errors"' in page
    # The form is still there with what was typed, and no results are drawn.
    assert '<option value="DeliveryCallback" selected>' in page
    if field != "failed":
        value = html.escape(parse_qs(params)[field][0])
        assert (
            f'name="{field}" type="{"search" if field == "phone" else "date"}" value="{value}"'
            in page
        )
    assert ids(page) == []
    assert "results-title" not in page


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("limit=0", "Use a whole number from 1 to 500."),
        ("before=x", "Use a callback id"),
        ("before=3&after=1", "Give either before or after, not both."),
    ],
)
def test_a_bad_link_parameter_answers_400_with_a_message(browse_sqlite, params, message):
    page = page_of(browse_sqlite, f"/search?phone=9999-9999&{params}", status=400)
    assert message in text(FORM_ALERT.search(page).group(1))
    assert 'value="9999-9999"' in page


def test_text_with_no_digits_gets_a_clear_message_not_an_error_page(browse_sqlite):
    page = page_of(browse_sqlite, "/search?phone=abc", status=400)
    assert field_alerts(page) == {
        "phone": "Type a phone number with digits, e.g. +55 44 99999-9999 or the last 8 digits."
    }
    assert "error-page" not in page
    assert "<h1" in page


# -- export control ----------------------------------------------------------------------


def test_the_export_form_carries_the_filters_and_masks_by_default(browse_sqlite):
    store(FAILED)
    page = page_of(browse_sqlite, "/search?phone=4499999999&failed=1&limit=5&before=999")
    form = re.search(r'<form class="export-form"(.*?)</form>', page, re.S).group(0)
    assert 'action="/search/export.csv"' in form
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form))
    assert hidden == {"phone": "4499999999", "failed": "1", "mask": "0"}
    # The box first, the hidden 0 after it: the server reads the first "mask".
    box = form.index('type="checkbox" name="mask" value="1" checked')
    assert box < form.index('type="hidden" name="mask" value="0"')
    assert "Mask phone numbers" in form
    # What a browser sends with the box checked, then unchecked.
    checked = browse_sqlite.get(
        "/search/export.csv?phone=4499999999&failed=1&mask=1&mask=0"
    ).get_data(as_text=True)
    assert "55 44 9***-9999" in checked and "554499999999" not in checked
    unchecked = browse_sqlite.get("/search/export.csv?phone=4499999999&failed=1&mask=0")
    assert "554499999999" in unchecked.get_data(as_text=True)


# -- the detail page ---------------------------------------------------------------------


def test_the_detail_page_shows_every_field_the_raw_json_and_the_related_callbacks(browse):
    sent = {
        **FAILED,
        "error": "Número não existe",
        "errorCode": "SHADOW_BAN",
        "momment": 1777494091684,
    }
    first = store(sent).id
    assert store(sent).duplicate  # Z-API sent it twice
    status = store(
        {**STATUS, "ids": [FAILED["messageId"]], "momment": 1777494095000, "phone": "5544999999999"}
    ).id
    unrelated = store(callback(7)).id

    page = page_of(browse, f"/deliveries/{first}")
    main = text(page)
    assert "<h1>" in page and f"Callback #{first}" in main
    assert "Failed" in main and "SHADOW_BAN" in main and "Número não existe" in main
    # The phone as people write it, and as Z-API sent it.
    assert "+55 44 9999-9999" in main and "as sent: <code>554499999999</code>" in page
    assert FAILED["messageId"] in main and FAILED["zaapId"] in main and "instance.id" in main
    assert "Received 2 times" in main
    assert '<time datetime="2026-04-29T20:21:31.684000Z"' in page
    # Raw JSON, indented, with its accents as they were sent.
    raw = html.unescape(re.search(r'<pre class="raw-json"><code>(.*?)</code>', page, re.S).group(1))
    assert raw.startswith('{\n  "phone": "554499999999",\n')
    assert '"error": "Número não existe"' in raw
    # The status about this message, in a table of rows, each linking to its own page.
    related = page.split('id="related-title"', 1)[1]
    assert ids(related) == [status]
    assert f'href="/deliveries/{status}"' in related
    assert unrelated not in ids(related)
    # Back to a search for the same phone.
    assert 'href="/search?phone=554499999999"' in page


def test_the_detail_page_says_how_long_after_zapis_stamp_it_arrived(browse):
    now_ms = int(time.time() * 1000)
    late = store(callback(1, momment=now_ms - 1500)).id
    early = store(callback(2, momment=now_ms + 2 * 3600 * 1000)).id
    unstamped = store(callback(3)).id

    lag = re.search(r'<span class="lag">\((.*?)\)</span>', page_of(browse, f"/deliveries/{late}"))
    seconds = re.fullmatch(r"(\d+\.\d) s later", html.unescape(lag.group(1))).group(1)
    assert 1.5 <= float(seconds) < 60
    early_page = text(page_of(browse, f"/deliveries/{early}"))
    assert "before Z-API's stamp" in early_page and "hour" in early_page
    assert "No stamp in this callback" in text(page_of(browse, f"/deliveries/{unstamped}"))


def test_the_detail_page_of_a_lone_callback(browse_sqlite):
    lone = store({"type": "ConnectedCallback", "connected": True, "instanceId": "i"}).id
    page = page_of(browse_sqlite, f"/deliveries/{lone}")
    assert "No other callback shares this message ID or zaapId." in page
    assert 'href="/search"' in page


def test_a_missing_callback_is_a_404_page(browse):
    page = page_of(browse, "/deliveries/424242", status=404)
    assert "Not found" in page and 'role="alert"' in page
    page_of(browse, "/deliveries/not-a-number", status=404)


# -- who sees what -----------------------------------------------------------------------


def test_signed_out_visitors_are_sent_to_sign_in(client):
    store(SEED)
    for path in ("/search?phone=9999-9999", "/deliveries/1"):
        response = client.get(path)
        assert response.status_code == 302
        assert urlsplit(response.headers["Location"]).path == "/login"


def test_a_viewer_can_search_and_open_a_callback(viewer_client):
    stored = store(SEED).id
    assert ids(page_of(viewer_client, "/search?phone=9999-9999")) == [stored]
    assert SEED["messageId"] in page_of(viewer_client, f"/deliveries/{stored}")


def test_the_nav_offers_search(browse_sqlite):
    assert '<a href="/search" aria-current="page">Search</a>' in page_of(browse_sqlite, "/search")


def test_what_zapi_sent_is_shown_as_text(browse_sqlite):
    stored = store(callback(1, XSS, error=XSS, errorCode=XSS, participant=XSS)).id
    for path in ("/search", f"/deliveries/{stored}", f"/search?phone={XSS}"):
        response = browse_sqlite.get(path)
        page = response.get_data(as_text=True)
        assert XSS not in page, path
    assert html.escape(XSS, quote=False) in page_of(browse_sqlite, f"/deliveries/{stored}")
    assert field_alerts(page_of(browse_sqlite, f"/search?phone={XSS}", status=400))
