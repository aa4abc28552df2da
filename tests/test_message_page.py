"""The message page /messages/<id>, through Flask's test client on a real database."""

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from dashboard import retention
from dashboard.extensions import db
from dashboard.messages import timeline
from dashboard.models import Delivery, Message, utcnow

from .support import english_client, signed_in_client, store_all
from .test_messages import MS0, T0, echo, message, reply, sent, status
from .test_stored_rows_render import LEGACY_BODIES

TAG = re.compile(r"<[^>]+>")
TIMES = "\N{MULTIPLICATION SIGN}"  # "received 3 times", as the page writes it
ECHO = echo(momment=MS0)
REPLY = reply("chegou, obrigado <b>!</b>", momment=MS0 + 90_000)


@pytest.fixture
def browse(any_db_app):
    """A signed-in English client on SQLite and on PostgreSQL."""
    return signed_in_client(any_db_app)


def page_of(client, path: str, status_code: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status_code, response.get_data(as_text=True)
    return response.get_data().decode("utf-8")  # strict: no lone surrogate got through


def text(fragment: str) -> str:
    return " ".join(html.unescape(TAG.sub(" ", fragment)).split())


def section(page: str, title_id: str) -> str:
    """The <section> labelled by ``title_id``."""
    found = re.search(rf'<section [^>]*aria-labelledby="{title_id}".*?</section>', page, re.S)
    assert found, f"no section {title_id}"
    return found.group(0)


def at(seconds: int):
    return T0 + timedelta(seconds=seconds)


def steps(page: str) -> list[str]:
    return re.findall(r'data-step="(\w+)"', section(page, "timeline-title"))


def test_every_part_of_a_read_message_is_on_its_page(browse):
    stored = store_all(
        [
            sent(),
            ECHO,
            status("SENT", 1),
            status("RECEIVED", 2),
            status("RECEIVED", 3),
            status("RECEIVED", 4),
            status("READ", 63),
            REPLY,
        ]
    )
    found = message()
    page = page_of(browse, f"/messages/{found.id}")

    assert f"Message #{found.id}" in text(page)
    summary = text(section(page, "summary-title"))
    assert "Read at May 1, 2026, 12:01:03 PM UTC . The customer replied at" in summary
    # Both times in the verdict are <time>s the page's script shows in the reader's zone.
    assert re.search(
        r'data-verdict>Read at <time datetime="2026-05-01T12:01:03Z" [^>]*>[^<]*</time>\. '
        r'The customer replied at <time datetime="[^"]+Z" [^>]*>[^<]*</time>\.</p>',
        page,
    )
    assert "+55 44 99999-9999" in summary
    assert "I1" in summary and "M1" in summary and "Z-M1" in summary
    assert "Seu pedido saiu para entrega" in summary
    assert 'class="badge badge-state badge-state-read" data-state-badge="read"' in page

    assert steps(page) == ["queued", "sent", "received", "read"]
    moments = text(section(page, "timeline-title"))
    assert f"Delivered 3{TIMES}" in moments
    assert f"Queued 2{TIMES}" in moments  # the delivery callback and our own echo
    assert f"Sent 1{TIMES}" not in moments and f"Read 1{TIMES}" not in moments
    # Every time is a <time> the page's script can localise, readable without it.
    assert '<time datetime="2026-05-01T12:00:02Z" title="2026-05-01 12:00:02 UTC">' in section(
        page, "timeline-title"
    )
    assert re.search(r'data-figure="to-phone">2\.0 s<', page)
    assert re.search(r'data-figure="to-read">1 minute<', page)

    replies = section(page, "replies-title")
    reply_id = stored[-1].id
    assert f'href="/deliveries/{reply_id}"' in replies
    assert "chegou, obrigado &lt;b&gt;!&lt;/b&gt;" in replies
    assert 'data-label="Words"' in replies

    callbacks = section(page, "callbacks-title")
    assert re.findall(r'data-callback="(\d+)"', callbacks) == [str(r.id) for r in stored[:-1]]
    for recorded in stored[:-1]:
        assert f'href="/deliveries/{recorded.id}"' in callbacks
    assert callbacks.count("<details") == len(stored) - 1
    assert "&#34;status&#34;: &#34;READ&#34;" in callbacks  # the raw JSON, escaped
    assert "MessageStatusCallback" in callbacks and "RECEIVED" in callbacks
    # Stamped in May, received now: Z-API's lag is months, after its stamp.
    assert callbacks.count(" later</td>") == len(stored) - 1
    assert 'class="table cards"' in callbacks and 'data-label="Raw JSON"' in callbacks


def test_a_message_that_failed_then_reached_the_phone_shows_both(browse):
    store_all([sent(error="Phone number does not exist"), status("RECEIVED", 5)])
    page = page_of(browse, f"/messages/{message().id}")
    assert 'data-state-badge="received"' in page
    failure = text(section(page, "failure-title"))
    assert "Invalid number" in failure
    assert "The phone number is not valid or has no WhatsApp account." in failure
    assert "Confirm the number with the customer" in failure
    assert "Phone number does not exist" in failure
    assert "later a receipt showed the message on the customer's phone: it is now Delivered" in (
        failure
    )
    assert steps(page) == ["failed", "received"]
    assert "On the customer's phone since" in text(section(page, "summary-title"))


def test_a_failed_message_says_why_and_what_to_do(browse):
    store_all([sent(error="Timeout on send message")])
    page = page_of(browse, f"/messages/{message().id}")
    assert 'data-state-badge="failed"' in page
    assert "Failed: Timeout or connection error." in text(section(page, "summary-title"))
    failure = text(section(page, "failure-title"))
    assert "Check in the Z-API panel that the instance is connected" in failure
    assert "data-failure-then" not in page
    assert "data-figure" not in page
    assert "No reply from the customer" in text(section(page, "replies-title"))


def test_a_message_without_a_failure_has_no_failure_part(browse):
    store_all([sent(), status("RECEIVED", 2)])
    page = page_of(browse, f"/messages/{message().id}")
    assert 'aria-labelledby="failure-title"' not in page
    assert 'data-figure="to-read"' not in page


@pytest.mark.parametrize("path", ["/messages/999", f"/messages/{2**31}", "/messages/x"])
def test_an_unknown_message_is_a_404_page(browse, path):
    store_all([sent()])
    page = page_of(browse, path, 404)
    assert 'role="alert"' in page


def test_the_page_needs_a_login(app):
    store_all([sent()])
    answer = english_client(app).get(f"/messages/{message().id}")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login")


def test_the_page_speaks_portuguese_by_default(app):
    store_all([sent(), status("READ", 5)])
    client = signed_in_client(app)
    client.environ_base.pop("HTTP_ACCEPT_LANGUAGE")
    page = page_of(client, f"/messages/{message().id}")
    assert "Linha do tempo" in page
    assert "Lida" in text(section(page, "summary-title"))


def test_figures_come_from_sent_without_queued_and_skip_what_clocks_contradict():
    sent_only = Message(sent_at=at(0), received_at=at(4), read_at=at(2), queued_at=None)
    assert timeline.time_to_phone(sent_only) == timedelta(seconds=4)
    assert timeline.time_to_read(sent_only) is None  # read "before" received: clocks disagree


def test_zapi_lag_is_left_out_when_the_stamp_is_no_real_time(browse):
    store_all([sent(momment=1000), status("RECEIVED", 2)])
    page = page_of(browse, f"/messages/{message().id}")
    lags = re.findall(r'data-label="Z-API\'s lag">(.*?)</td>', page)
    assert len(lags) == 2
    assert "—" in lags[0] and "later" in lags[1]


@pytest.mark.parametrize("raw", LEGACY_BODIES.values(), ids=LEGACY_BODIES.keys())
def test_hostile_stored_bodies_render(any_db_app, raw):
    client = signed_in_client(any_db_app)
    stored = store_all([sent(), status("RECEIVED", 2), REPLY])
    with db.writing() as session:
        for recorded in stored:
            session.execute(update(Delivery).where(Delivery.id == recorded.id).values(raw=raw))
    page = page_of(client, f"/messages/{message().id}")
    assert section(page, "callbacks-title").count("<details") == 2
    assert "No text (see the callback)" in section(page, "replies-title")


def test_a_callback_page_links_to_its_message(browse):
    stored = store_all([sent(), status("RECEIVED", 2, "M1", "M2"), {**REPLY, "type": "X"}])
    found = message()
    for recorded in stored[:2]:
        page = page_of(browse, f"/deliveries/{recorded.id}")
        assert f'href="/messages/{found.id}"' in page
        assert "This callback is about message M1" in text(page)
    assert "data-message-link" not in page_of(browse, f"/deliveries/{stored[2].id}")


def test_the_api_answers_as_before(browse):
    store_all([sent(), status("RECEIVED", 2)])
    item = browse.get(f"/api/messages/{message().id}").json
    assert [step["state"] for step in item["steps"]] == ["queued", "received"]
    assert item["steps"][1] == {"state": "received", "at": "2026-05-01T12:00:02Z", "count": 1}


def test_a_message_whose_older_callbacks_were_pruned_still_shows_everywhere(browse):
    older = store_all([sent(), ECHO, status("RECEIVED", 2)])
    newest = store_all([status("READ", 63)])[0].id
    reply_id = store_all([REPLY])[0].id
    with db.writing() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([recorded.id for recorded in older]))
            .values(received_at=utcnow() - timedelta(days=100))
        )
    assert retention.prune(db, days=30).deleted == 3
    found = message()
    assert found.first_delivery_id == older[0].id  # a callback no longer stored

    page = page_of(browse, f"/messages/{found.id}")
    assert steps(page) == ["queued", "received", "read"]
    summary = text(section(page, "summary-title"))
    assert "Read at May 1, 2026, 12:01:03 PM UTC . The customer replied at" in summary
    callbacks = section(page, "callbacks-title")
    assert re.findall(r'data-callback="(\d+)"', callbacks) == [str(newest)]
    assert f'href="/deliveries/{reply_id}"' in section(page, "replies-title")

    item = browse.get(f"/api/messages/{found.id}").json
    assert (item["state"], item["callbacks"]) == ("read", [newest])
    assert [reply["id"] for reply in item["replies"]] == [reply_id]
    listed = browse.get("/api/messages", query_string={"phone": "44 99999-9999"}).json
    assert [each["id"] for each in listed["items"]] == [found.id]
    assert browse.get(f"/api/deliveries/{newest}").json["messageState"] == "read"

    search = page_of(browse, "/search?phone=44+99999-9999")
    assert f'<tr class="message" data-message-id="{found.id}" data-state="read">' in search
    every_callback = page_of(browse, "/search?phone=44+99999-9999&view=callbacks")
    assert f'data-id="{newest}"' in every_callback and f'data-id="{older[0].id}"' not in (
        every_callback
    )
    feed = page_of(browse, "/")
    assert f'data-message="{found.id}" data-news="{newest}" data-state="read"' in feed
    assert f'data-id="{reply_id}"' in page_of(browse, "/?view=callbacks")
    assert f'href="/messages/{found.id}"' in page_of(browse, f"/deliveries/{newest}")


def test_our_own_echo_is_marked_sent_by_us_on_the_message_and_callback_pages(browse):
    delivery, our_echo = store_all([sent(), echo()])
    page = page_of(browse, f"/messages/{message().id}")
    rows = re.findall(r'<tr data-callback="(\d+)".*?</tr>', section(page, "callbacks-title"), re.S)
    marked = re.findall(
        r'<tr data-callback="(\d+)"[^>]*>(?:(?!</tr>).)*data-part="from-me"', page, re.S
    )
    assert rows == [str(delivery.id), str(our_echo.id)]
    assert marked == [str(our_echo.id)]  # the echo alone, not the delivery callback
    echo_type = re.search(
        r"<dt>Type</dt><dd>(.*?)</dd>", page_of(browse, f"/deliveries/{our_echo.id}"), re.S
    )
    sent_type = re.search(
        r"<dt>Type</dt><dd>(.*?)</dd>", page_of(browse, f"/deliveries/{delivery.id}"), re.S
    )
    assert text(echo_type[1]) == "ReceivedCallback Sent by us"
    assert sent_type[1] == "DeliveryCallback"
