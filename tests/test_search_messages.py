"""Search finds messages: by id, by LID, listed with their state and verdict (Flask client)."""

import csv
import html
import io
import re
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from dashboard import phones
from dashboard.extensions import db
from dashboard.messages import queries
from dashboard.messages.queries import MessageFilters
from dashboard.models import Message

from .support import FAILED, SEED, signed_in_client, store, store_all

TAG = re.compile(r"<[^>]+>")
DELIVERY_ROW = re.compile(r'<tr class="delivery[^"]*" data-id="(\d+)"')
DISCONNECTED = {
    "momment": 1580163342,
    "error": "Device has been disconnected",
    "disconnected": True,
    "type": "DisconnectedCallback",
    "instanceId": "instance.id",
}
PROXY = {
    "type": "ProxyCallback",
    "instanceId": "instance.id",
    "error": "The instance was connected without proxy, the configured proxy failed 3 times.",
}


@pytest.fixture
def browse(any_db_app):
    """A signed-in client on SQLite and on PostgreSQL."""
    return signed_in_client(any_db_app, "ana", "admin")


def page_of(client, url: str, status: int = 200, **params) -> str:
    response = client.get(url, query_string=params or None)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def text(fragment: str) -> str:
    return " ".join(html.unescape(TAG.sub(" ", fragment)).split())


def delivery_ids(page: str) -> list[int]:
    return [int(found) for found in DELIVERY_ROW.findall(page)]


# -- failed sends, instance events, odd stamps --------------------------------------------


def test_failed_only_means_failed_sends_not_instance_events(browse):
    failed = store(FAILED).id
    store(DISCONNECTED)
    store(PROXY)
    store(SEED)
    page = page_of(browse, "/search", view="callbacks", failed="1")
    assert delivery_ids(page) == [failed]
    api = browse.get("/api/deliveries?failed=1").get_json()
    assert [item["id"] for item in api["items"]] == [failed]
    body = browse.get("/search/export.csv?failed=1").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(body[1:], newline="")))
    assert [int(row["id"]) for row in rows] == [failed]


def test_proxy_callback_is_in_the_type_list(browse):
    page = page_of(browse, "/search", view="callbacks")
    assert '<option value="ProxyCallback">ProxyCallback</option>' in page
    proxy = store(PROXY).id
    assert delivery_ids(page_of(browse, "/search", view="callbacks", type="ProxyCallback")) == [
        proxy
    ]


@pytest.mark.parametrize(
    "momment",
    [
        26151515154000,  # the year 2798: the ConnectedCallback example's seconds read as ms
        1_000_000_000_000,  # 2001, before WhatsApp's API
        10**18,  # no calendar holds it
    ],
)
def test_a_momment_that_cannot_be_a_real_time_is_shown_as_a_number(browse, momment):
    stored = store({**SEED, "messageId": f"odd-{momment}", "momment": momment}).id
    page = text(page_of(browse, f"/deliveries/{stored}"))
    assert f"Stamped by Z-API Not a real time ( momment {momment})" in page
    assert "2798" not in page and "2001" not in page
    assert "later" not in page and "before Z-API's stamp" not in page


def test_a_real_momment_is_still_shown_as_a_time(browse):
    stored = store({**FAILED, "momment": 1777494091684}).id
    page = page_of(browse, f"/deliveries/{stored}")
    assert '<time datetime="2026-04-29T20:21:31.684000Z"' in page
    assert "Not a real time" not in page


# -- messages listed with their state ---------------------------------------------------

MESSAGE_ROW = re.compile(r'<tr class="message" data-message-id="(\d+)" data-state="(\w+)"')


def messages_listed(page: str) -> list[tuple[int, str]]:
    return [(int(pk), state) for pk, state in MESSAGE_ROW.findall(page)]


def message_pk(client, message_id: str) -> int:
    (item,) = client.get(f"/api/messages?messageId={message_id}").get_json()["items"]
    return item["id"]


def sent(n: int, phone: str = "5544999999999", **extra) -> dict:
    return {**SEED, "messageId": f"M{n}", "zaapId": f"Z{n}", "phone": phone, **extra}


def status(status_word: str, *ids: str, momment: int = 1777494100000) -> dict:
    return {
        "instanceId": SEED["instanceId"],
        "status": status_word,
        "ids": list(ids),
        "momment": momment,
        "phone": "5544999999999",
        "type": "MessageStatusCallback",
    }


def test_the_search_lists_messages_with_their_state_by_default(browse):
    store(sent(1, momment=1777494000000))
    store(sent(2, momment=1777494001000))
    store(status("READ", "M1"))
    store(sent(3, "5511988887777", error="Phone number does not exist"))
    first, second, third = (message_pk(browse, f"M{n}") for n in (1, 2, 3))
    page = page_of(browse, "/search")
    assert "Search messages" in page
    assert messages_listed(page) == [(third, "failed"), (second, "queued"), (first, "read")]
    assert delivery_ids(page) == []
    row = page.split(f'data-message-id="{first}"', 1)[1].split("</tr>", 1)[0]
    assert f'href="/messages/{first}"' in row
    # The verdict's time is a <time> the page's script shows in the reader's zone.
    assert 'Read at <time datetime="2026-04-29T20:21:40Z" title="2026-04-29 20:21:40 UTC">' in row
    assert "+55 44 99999-9999" in text(row)
    assert 'data-label="State"' in row
    # The same filters: phone, state, instance.
    assert messages_listed(page_of(browse, "/search", phone="44 99999-9999")) == [
        (second, "queued"),
        (first, "read"),
    ]
    assert messages_listed(page_of(browse, "/search", state="failed")) == [(third, "failed")]
    assert messages_listed(page_of(browse, "/search", instance="other")) == []
    assert "No messages match" in page_of(browse, "/search", instance="other")
    # A bad state is a 400 under its field, in words.
    bad = page_of(browse, "/search", status=400, state="lost")
    assert 'id="search-state-errors"' in bad and "Use one of: queued" in text(bad)


def test_every_callback_is_one_click_away_with_its_filters_paging_and_export(browse):
    stored = [store(sent(n)).id for n in range(3)]
    messages_page = page_of(browse, "/search", phone="9999-9999")
    assert 'href="/search?view=callbacks&amp;phone=9999-9999"' in messages_page
    page = page_of(browse, "/search", view="callbacks", phone="9999-9999", limit="2")
    assert "Search callbacks" in page and messages_listed(page) == []
    assert delivery_ids(page) == stored[:0:-1]
    older = re.search(r'<a rel="next" href="([^"]+)"', page).group(1)
    assert "view=callbacks" in older
    assert delivery_ids(page_of(browse, html.unescape(older))) == [stored[0]]
    assert 'name="view" value="callbacks"' in page  # a new search stays in this list
    assert 'action="/search/export.csv"' in page


def test_messages_page_back_in_time(browse):
    for n in range(3):
        store(sent(n))
    pks = [message_pk(browse, f"M{n}") for n in range(3)]
    page = page_of(browse, "/search", limit="2")
    assert [pk for pk, _ in messages_listed(page)] == pks[:0:-1]
    older = html.unescape(re.search(r'<a rel="next" href="([^"]+)"', page).group(1))
    back = page_of(browse, older)
    assert [pk for pk, _ in messages_listed(back)] == [pks[0]]
    assert '<a rel="first" href="/search?limit=2">' in back


# -- by id --------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["messageId", "phone"])
@pytest.mark.parametrize("which", ["messageId", "zaapId"])
def test_a_pasted_id_opens_its_message(browse, field, which):
    store(sent(1, messageId="3EB0C4A1F2D3E4B5A697", zaapId="A20DA9C0183A2D35A260F53F5D2B9244"))
    store(sent(2))
    pk = message_pk(browse, "3EB0C4A1F2D3E4B5A697")
    pasted = "3EB0C4A1F2D3E4B5A697" if which == "messageId" else "A20DA9C0183A2D35A260F53F5D2B9244"
    for view in ("", "callbacks"):
        response = browse.get("/search", query_string={field: f" {pasted} ", "view": view})
        assert response.status_code == 303
        assert response.headers["Location"] == f"/messages/{pk}"


def test_an_id_of_several_messages_lists_them_and_an_unknown_one_says_so(browse):
    store(sent(1, messageId="SAMEID000000000000001"))
    store(sent(1, messageId="SAMEID000000000000001", instanceId="other"))
    page = page_of(browse, "/search", messageId="SAMEID000000000000001")
    assert len(messages_listed(page)) == 2
    asked_among_callbacks = page_of(
        browse, "/search", messageId="SAMEID000000000000001", view="callbacks"
    )
    assert len(messages_listed(asked_among_callbacks)) == 2
    assert "Search messages" in asked_among_callbacks
    assert 'name="view" value="callbacks"' not in asked_among_callbacks
    missing = page_of(browse, "/search", phone="999999999999999999999")
    assert messages_listed(missing) == []
    assert "No message has the ID or zaapId 999999999999999999999." in text(missing)
    assert 'role="status"' in missing


def test_a_number_is_not_taken_for_an_id(browse):
    store(sent(1))
    for typed in ("5544999999999", "+55 44 99999-9999", "44.9999.9999", "9999-9999"):
        assert len(messages_listed(page_of(browse, "/search", phone=typed))) == 1, typed
    # Letters that are not an id still get the phone's own advice.
    assert "Type a phone number with digits" in text(page_of(browse, "/search?phone=abc", 400))


# -- the verdict card ---------------------------------------------------------------------


def card(page: str) -> str:
    found = re.search(r'<section class="card verdict-card".*?</section>', page, re.S)
    return text(found.group()) if found else ""


def test_a_phone_search_answers_for_the_latest_message_in_one_sentence(browse):
    store(sent(1, momment=1777494000000))
    store(status("READ", "M1", momment=1777494180000))
    read = page_of(browse, "/search", phone="44 99999-9999")
    assert card(read) == (
        "Latest message to +55 44 99999-9999 ✓✓ Read Read at April 29, 2026, 8:23:00 PM UTC . "
        "Open this message"
    )
    # Its time is a <time>: UTC text without JavaScript, the reader's zone with it.
    assert (
        'Read at <time datetime="2026-04-29T20:23:00Z" title="2026-04-29 20:23:00 UTC">'
        "April 29, 2026, 8:23:00\u202fPM UTC</time>.</p>"
    ) in read.split('class="card verdict-card"', 1)[1].split("</section>", 1)[0]
    store(sent(2, momment=1777494300000))
    queued = card(page_of(browse, "/search", phone="44 99999-9999"))
    assert "Handed to WhatsApp at April 29, 2026, 8:25:00 PM UTC , not on the phone" in queued
    assert "not that the customer received it" in queued
    store(status("RECEIVED", "M2", momment=1777494360000))
    received = card(page_of(browse, "/search", phone="44 99999-9999"))
    assert "On the customer's phone since April 29, 2026, 8:26:00 PM UTC , not read" in received
    assert "“not read” may mean they read it" in received
    # Only a phone search has a card: the whole list has no one latest message.
    assert card(page_of(browse, "/search")) == ""
    assert card(page_of(browse, "/search", phone="5511988887777")) == ""


def test_a_verdict_shows_zapis_words_as_text_never_as_html(browse):
    # An error Z-API never documented is its verdict's reason, as it came: anyone's text.
    store(sent(1, error='<img src=x onerror="alert(1)"> & co'))
    shown = "Failed: &lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; co."
    listed = page_of(browse, "/search")
    found = page_of(browse, "/search", phone="44 99999-9999")
    opened = page_of(browse, f"/messages/{message_pk(browse, 'M1')}")
    assert shown in listed.split("<tbody>", 1)[1]
    assert shown in found.split('class="card verdict-card"', 1)[1].split("</section>", 1)[0]
    assert f"data-verdict>{shown}</p>" in opened
    for page in (listed, found, opened):
        assert "<img" not in page


def test_each_listed_message_shows_its_sentence_and_the_card_speaks_portuguese(browse):
    store(sent(1, error="Phone number does not exist"))
    store(sent(2, phone="5511988887777"))
    page = page_of(browse, "/search")
    rows = page.split("<tbody>", 1)[1]
    assert "Failed: " in text(rows) and "Handed to WhatsApp at " in text(rows)
    browse.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pt-BR"
    portuguese = page_of(browse, "/search", phone="44 99999-9999")
    assert "Buscar mensagens" in portuguese
    assert card(portuguese).startswith("Última mensagem para +55 44 99999-9999 ✗ Falhou Falhou: ")


# -- replies and the cost of a page -------------------------------------------------------


def reply_in(n: int, phone: str = "5544999999999", **extra) -> dict:
    """The customer's message ``n`` in the chat of ``phone``."""
    return {
        "type": "ReceivedCallback",
        "instanceId": SEED["instanceId"],
        "messageId": f"R{n}",
        "phone": phone,
        "fromMe": False,
        "text": {"message": f"reply {n}"},
        **extra,
    }


def test_replies_of_many_messages_are_each_ones_own(any_db_app):
    chat = {
        "m1": sent(1),
        "r1": reply_in(1),
        "m2": sent(2),
        "elsewhere": reply_in(2, "5511988887777"),  # another chat
        "ours": reply_in(3, fromMe=True),  # our own message echoed: not the customer's
        "m3": sent(3),
        "r4": reply_in(4),
        "r5": reply_in(5),
        "m4": sent(4, "5511988887777"),
        "m5": sent(5),
    }
    stored = store_all(list(chat.values()))
    ids = {name: recorded.id for name, recorded in zip(chat, stored, strict=True)}
    with db.reading() as session:
        messages = queries.search(session, MessageFilters(), 10)
        by_id = {message.message_id: message for message in messages}
        unknown_chat = Message(id=0, phone_key_reversed=None, first_delivery_id=0)
        found = queries.replies_of(session, [*messages, unknown_chat])
        first_only = queries.replies_of(session, messages, limit=1)
        one_by_one = {message.id: queries.replies(session, message) for message in messages}

    def reply_ids(replies: dict) -> dict[str, list[int]]:
        return {
            message_id: [reply.id for reply in replies[message.id]]
            for message_id, message in by_id.items()
        }

    assert reply_ids(found) == {
        "M1": [ids["r1"], ids["r4"], ids["r5"]],
        "M2": [ids["r4"], ids["r5"]],
        "M3": [ids["r4"], ids["r5"]],
        "R3": [ids["r4"], ids["r5"]],
        "M4": [],
        "M5": [],
    }
    assert found[0] == []
    assert reply_ids(one_by_one) == reply_ids(found)
    assert reply_ids(first_only) == {
        "M1": [ids["r1"]],
        "M2": [ids["r4"]],
        "M3": [ids["r4"]],
        "R3": [ids["r4"]],
        "M4": [],
        "M5": [],
    }


def test_replies_of_the_largest_page_and_its_latest_message(any_db_app):
    (first,) = store_all([reply_in(1)])
    chat = phones.reversed_key(phones.stored_key("5544999999999"))
    # A page lists up to 500 messages, and the card may add the latest: more terms than
    # SQLite takes in one compound SELECT.
    page = [Message(id=pk, phone_key_reversed=chat, first_delivery_id=0) for pk in range(501)]
    with statements_run() as run, db.reading() as session:
        found = queries.replies_of(session, page, limit=1)
    assert {pk: [reply.id for reply in replies] for pk, replies in found.items()} == {
        pk: [first.id] for pk in range(501)
    }
    assert len([sql for sql in run if "message_pk" in sql]) == 6  # 100 messages a statement


@contextmanager
def statements_run():
    """Every SQL statement the app runs inside the block."""
    run: list[str] = []

    def note(_connection, _cursor, statement, _parameters, _context, _executemany):
        run.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        yield run
    finally:
        event.remove(db.engine, "before_cursor_execute", note)


def statements_for(client, **params) -> list[str]:
    with statements_run() as run:
        page = page_of(client, "/search", **params)
    assert messages_listed(page)
    return run


def test_a_page_of_messages_costs_the_same_few_statements_however_long(browse):
    for n in range(30):
        store_all([sent(n), reply_in(n)])
    store(sent(99))  # the newest, not replied to yet
    short = statements_for(browse, phone="44 99999-9999", limit="2")
    long = statements_for(browse, phone="44 99999-9999", limit="30")
    assert len(long) == len(short)
    page = page_of(browse, "/search", phone="44 99999-9999", limit="30")
    rows = page.split("<tbody>", 1)[1]
    assert text(rows).count("The customer replied at") == 29
    assert "The customer replied at" not in card(page)
    # The first page of a phone starts with its newest message: no second search for the card.
    messages_read = [sql for sql in short if "FROM messages" in sql]
    assert len(messages_read) == 1
    older = statements_for(browse, phone="44 99999-9999", limit="2", before=str(10**6))
    assert len(older) == len(short) + 1
    # Another filter may leave the newest message out of the list: the card looks it up.
    queued_only = statements_for(browse, phone="44 99999-9999", limit="2", state="queued")
    assert len(queued_only) == len(short) + 1
    latest = card(page_of(browse, "/search", phone="44 99999-9999", state="queued", limit="2"))
    assert latest.startswith("Latest message to +55 44 99999-9999")
    assert "The customer replied at" not in latest


def test_failed_messages_are_listed_by_category_from_a_select_that_shows_for_failures(browse):
    store(sent(1, error="Phone number does not exist"))
    store(sent(2, error="Timeout on send message"))
    store(sent(3))
    invalid, timeout = message_pk(browse, "M1"), message_pk(browse, "M2")
    assert 'id="search-category"' not in page_of(browse, "/search")
    page = page_of(browse, "/search", state="failed", category="timeout")
    assert messages_listed(page) == [(timeout, "failed")]
    select = page.split('<select id="search-category" name="category">', 1)[1].split("</select>")[0]
    assert '<option value="timeout" selected>Timeout or connection error</option>' in select
    assert '<option value="invalid-number">Invalid number</option>' in select
    assert '<option value="">Any failure</option>' in select
    listed = page_of(browse, "/search", state="failed", category="invalid-number")
    assert messages_listed(listed) == [(invalid, "failed")]
    assert len(messages_listed(page_of(browse, "/search", state="failed"))) == 2
    # The list of every callback has no category: the link to it drops the filter.
    assert (
        "category=timeout" not in page.split('aria-label="What to list"', 1)[1].split("</nav>")[0]
    )


def test_an_unknown_category_is_a_400_under_its_field_in_the_readers_language(browse):
    bad = page_of(browse, "/search", status=400, state="failed", category="lost")
    assert 'id="search-category-errors"' in bad
    assert "Use one of: shadow-ban, permission" in text(bad)
    browse.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pt-BR"
    portuguese = page_of(browse, "/search", status=400, category="lost")
    assert "Use um destes: shadow-ban, permission" in text(portuguese)
    assert 'aria-invalid="true" aria-describedby="search-category-errors"' in portuguese
