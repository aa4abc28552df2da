"""The start page: the latest messages by default, every callback on request, instance events
and the last day's failures, rendered by the server (Flask client)."""

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from dashboard.extensions import db
from dashboard.messages import failures
from dashboard.models import Message

from .support import english_client, make_user, sign_in, signed_in_client, store_all
from .test_messages import echo, reply, sent, status

ROW = re.compile(r'<tr class="message[^"]*" data-message="(\d+)"[^>]*>(.*?)</tr>', re.S)
TIME = re.compile(r'<time datetime="[^"]+Z" title="[^"]+ UTC" data-field="latestAt">')
EVENT = re.compile(r'<li class="instance-event [^"]*" data-instance="([^"]*)"[^>]*>(.*?)</li>')
# A category's count on the feed: its code, the ids it counts, whether it is shown, its
# link to those messages, its label and its number.
COUNT = re.compile(
    r'<li data-category="([^"]+)" data-message-ids="([\d ]*)"( hidden)?><a href="([^"]+)">'
    r"<span>([^<]+)</span> <strong data-count>(\d+)</strong></a></li>"
)


def now_ms(seconds_ago: float = 0) -> int:
    return int((datetime.now(UTC) - timedelta(seconds=seconds_ago)).timestamp() * 1000)


def instance_event(kind: str, instance: str = "I1", **fields) -> dict:
    return {"type": kind, "instanceId": instance, **fields}


@pytest.fixture
def client(app):
    return signed_in_client(app)


def message_rows(page: str) -> list[tuple[int, str]]:
    body = page[page.index("<tbody data-message-rows>") : page.index("</tbody>")]
    return [(int(pk), cells) for pk, cells in ROW.findall(body)]


def test_the_feed_lists_one_row_per_message_newest_news_first(client):
    store_all([sent("M1"), sent("M2"), echo("M1", "Seu pedido saiu"), status("READ", 5, "M2")])
    page = client.get("/").get_data(as_text=True)
    assert '<h1 id="feed-title">Latest messages</h1>' in page
    rows = message_rows(page)
    assert len(rows) == 2
    (newest, newest_cells), (older, older_cells) = rows
    # M2's READ is the newest callback of all: its message comes first.
    assert 'data-state-badge="read"' in newest_cells
    assert '<span class="ticks" aria-hidden="true">✓✓</span> Read' in newest_cells
    assert 'data-state-badge="queued"' in older_cells
    assert ">Seu pedido saiu<" in older_cells
    assert "+55 44 99999-9999" in newest_cells
    assert f'href="/messages/{newest}"' in newest_cells
    assert f'href="/messages/{older}"' in older_cells
    assert re.search(
        r'<time datetime="[^"]+Z" title="[^"]+ UTC" data-field="latestAt">', newest_cells
    )
    # The callbacks' own table is not on the default page.
    assert "data-feed-rows" not in page
    assert 'data-view="messages"' in page


def test_a_failed_message_shows_its_failure_in_plain_words(client):
    store_all([sent("M1", error="Phone number does not exist"), sent("M2", error="Ground control")])
    page = client.get("/").get_data(as_text=True)
    (_, unknown), (_, invalid) = message_rows(page)
    assert 'data-state-badge="failed"' in invalid
    assert '<span class="error-text" data-field="failure">Invalid number</span>' in invalid
    # An error this dashboard does not know shows in Z-API's own words.
    assert '<span class="error-text" data-field="failure">Ground control</span>' in unknown


def test_a_failure_that_gave_way_to_a_receipt_shows_no_failure(client):
    store_all([sent("M1", error="Phone number does not exist"), status("RECEIVED", 5)])
    ((_, cells),) = message_rows(client.get("/").get_data(as_text=True))
    assert 'data-state-badge="received"' in cells
    assert "Delivered" in cells
    assert '<span class="error-text" data-field="failure"></span>' in cells


def test_the_page_is_in_portuguese_by_default(app):
    store_all([sent("M1"), status("RECEIVED", 5)])
    make_user("paula", "viewer")
    portuguese = app.test_client()
    sign_in(portuguese, "paula")
    page = portuguese.get("/").get_data(as_text=True)
    assert "Últimas mensagens" in page
    assert '<span class="ticks" aria-hidden="true">✓✓</span> Entregue' in page
    assert 'data-label="Última novidade"' in page
    assert "Todos os callbacks" in page


def test_stored_words_are_shown_as_text(client):
    store_all([echo("M1", "<img src=x onerror=alert(1)>")])
    page = client.get("/").get_data(as_text=True)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_every_callback_is_one_link_away_with_the_feed_as_today(client):
    stored = store_all([sent("M1"), status("READ", 5)])
    page = client.get("/").get_data(as_text=True)
    assert '<a href="/?view=callbacks">Every callback</a>' in page
    assert '<a href="/" aria-current="page">Messages</a>' in page
    callbacks = client.get("/?view=callbacks").get_data(as_text=True)
    assert "Latest callbacks" in callbacks
    assert 'data-view="callbacks"' in callbacks
    assert re.findall(r'<tr class="delivery[^"]*" data-id="(\d+)"', callbacks) == [
        str(recorded.id) for recorded in reversed(stored)
    ]
    assert "data-filter-failed" in callbacks
    assert "data-pause" in callbacks
    assert "data-message-rows" not in callbacks
    assert '<a href="/?view=callbacks" aria-current="page">Every callback</a>' in callbacks


def test_the_socket_resumes_after_the_newest_callback_when_the_page_was_drawn(client):
    stored = store_all([sent("M1"), {"type": "PresenceChatCallback", "phone": "55", "status": "x"}])
    page = client.get("/").get_data(as_text=True)
    assert f'data-latest-id="{stored[-1].id}"' in page


def test_instance_events_show_as_one_line_per_instance_not_as_messages(client):
    store_all(
        [
            instance_event("ConnectedCallback", "I1", connected=True),
            instance_event("DisconnectedCallback", "I2", error="Device has been disconnected"),
            instance_event("DisconnectedCallback", "I1", error="Device has been disconnected"),
            instance_event("ProxyCallback", "I3", error="proxy socks5://user:secret@host failed"),
        ]
    )
    page = client.get("/").get_data(as_text=True)
    lines = re.findall(
        r'<li class="instance-event [^"]*" data-instance="([^"]*)"[^>]*>(.*?)</li>', page
    )
    assert [instance for instance, _ in lines] == ["I1", "I2", "I3"]
    texts = [re.sub(r"<time[^>]*>.*?</time>", "{time}", text) for _, text in lines]
    assert texts == [
        "Instance I1 disconnected at {time}.",
        "Instance I2 disconnected at {time}.",
        "Instance I3 connected without its proxy at {time}.",
    ]
    assert "secret" not in page  # a proxy's URL may hold its password
    assert message_rows(page) == []
    assert client.get("/?view=callbacks").status_code == 200


def test_no_instance_event_no_line(client):
    store_all([sent("M1")])
    page = client.get("/").get_data(as_text=True)
    assert "data-instance-events hidden" in page


def test_the_last_days_failures_are_counted_per_category(client):
    recent = now_ms(60)
    store_all(
        [
            sent("M1", error="Phone number does not exist", momment=recent),
            sent("M2", error="Phone number does not exist", momment=recent),
            sent("M3", error="Timeout on send message", momment=recent),
            sent("M4", error="Something new", momment=recent),
            # A failure of two days ago, and one that gave way to a receipt: not counted.
            sent("M5", error="Timeout on send message", momment=now_ms(2 * 86400)),
            sent("M6", error="Timeout on send message", momment=recent),
            status("RECEIVED", 0, "M6", momment=recent + 1000),
        ]
    )
    page = client.get("/").get_data(as_text=True)
    shown = [
        (code, label, number)
        for code, _ids, hidden, _link, label, number in COUNT.findall(page)
        if not hidden
    ]
    assert shown == [
        ("invalid-number", "Invalid number", "2"),
        ("timeout", "Timeout or connection error", "1"),
        ("other", "Other error", "1"),
    ]
    # Every category has its line, for the live feed to fill; those with none are hidden.
    assert [code for code, *_ in COUNT.findall(page)] == list(failures.categories())
    link = re.search(r'<a href="(/search\?state=failed&amp;since=[^"]+)">Search the failed', page)
    assert link is not None
    assert client.get(html.unescape(link.group(1))).status_code == 200


def test_each_count_links_to_the_messages_it_counts(client):
    recent = now_ms(60)
    store_all(
        [
            sent("M1", error="Phone number does not exist", momment=recent),
            sent("M2", error="Phone number does not exist", momment=recent),
            sent("M3", error="Timeout on send message", momment=recent),
            sent("M4", error="Phone number does not exist", momment=now_ms(2 * 86400)),
        ]
    )
    page = client.get("/").get_data(as_text=True)
    for code, ids, hidden, link, _label, number in COUNT.findall(page):
        listed = client.get(html.unescape(link)).get_data(as_text=True)
        found = sorted(
            int(pk) for pk in re.findall(r'<tr class="message" data-message-id="(\d+)"', listed)
        )
        # The line names the ids it counts, for live.js; the link lists exactly those.
        assert found == sorted(map(int, ids.split())), code
        assert len(found) == int(number) and bool(hidden) == (not found)
    assert {
        code: number for code, _ids, hidden, _l, _s, number in COUNT.findall(page) if not hidden
    } == {
        "invalid-number": "2",
        "timeout": "1",
    }


def test_without_failures_the_feed_says_so(client):
    store_all([sent("M1")])
    assert "No message failed in the last 24 hours." in client.get("/").get_data(as_text=True)


def test_an_empty_feed_says_how_to_start(client):
    page = client.get("/").get_data(as_text=True)
    assert "No message has been sent yet." in page
    assert "data-message-table hidden" in page


def test_the_feed_needs_a_login(app):
    assert english_client(app).get("/").status_code == 302


def test_a_message_row_written_by_hand_still_renders(client):
    # An unknown state, a failure with no text, no phone, a last callback that was pruned.
    with db.writing() as session:
        session.execute(
            insert(Message).values(
                instance_id="",
                message_id="by-hand",
                state="<b>bogus</b>",
                first_at=datetime(2026, 5, 1, tzinfo=UTC),
                first_delivery_id=10**6,
                last_delivery_id=10**6,
            )
        )
        session.execute(
            insert(Message).values(
                instance_id="",
                message_id="failed-without-error",
                state="failed",
                first_at=datetime(2026, 5, 1, tzinfo=UTC),
                failed_at=datetime(2026, 5, 1, tzinfo=UTC),
                first_delivery_id=10**6 - 1,
                last_delivery_id=10**6 - 1,
            )
        )
    answer = client.get("/")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert len(message_rows(page)) == 2
    assert "&lt;b&gt;bogus&lt;/b&gt;" in page
    assert 'datetime="2026-05-01T00:00:00Z"' in page


def test_an_instance_events_error_is_no_failed_send_in_the_callback_list(client):
    store_all(
        [
            instance_event("DisconnectedCallback", error="Device has been disconnected"),
            sent("M1", error="Phone number does not exist"),
        ]
    )
    page = client.get("/?view=callbacks").get_data(as_text=True)
    rows = re.findall(r'<tr class="delivery[^"]*"[^>]*>.*?</tr>', page, re.S)
    disconnected = next(row for row in rows if "DisconnectedCallback" in row)
    failed_send = next(row for row in rows if 'data-type="DeliveryCallback"' in row)
    assert "Device has been disconnected" in disconnected  # its words, shown as they came
    assert "data-failed" not in disconnected and 'data-part="failed"' not in disconnected
    assert "data-failed" in failed_send and 'data-part="failed"' in failed_send


def callback_rows(page: str) -> list[str]:
    """The drawn rows of a list of every callback (not the live rows' empty skeleton)."""
    return re.findall(r'<tr class="delivery[^"]*" data-id="\d+".*?</tr>', page, re.S)


def test_our_own_echoed_message_is_marked_sent_by_us_in_every_callback_list(app, client):
    store_all([sent("M1"), echo("M1"), reply()])
    for path in ("/?view=callbacks", "/search?view=callbacks"):
        rows = callback_rows(client.get(path).get_data(as_text=True))
        marked = [row for row in rows if 'data-part="from-me"' in row]
        assert len(rows) == 3, path
        # The echo alone: neither the customer's reply nor the delivery callback.
        assert len(marked) == 1, path
        assert 'data-type="ReceivedCallback"' in marked[0] and ">M1<" in marked[0]
        assert '<span class="badge badge-muted" data-part="from-me">Sent by us</span>' in marked[0]
    make_user("paula", "viewer")
    portuguese = app.test_client()
    sign_in(portuguese, "paula")
    page = portuguese.get("/?view=callbacks").get_data(as_text=True)
    assert 'data-part="from-me">Enviada por nós</span>' in "".join(callback_rows(page))
