"""WhatsApp's LIDs: extracted from callbacks, searched, mapped to numbers, backfilled."""

import json
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, text, update

from dashboard import deliveries, lids, phones
from dashboard.extensions import db
from dashboard.models import PhoneLid, utcnow
from dashboard.payloads import parse

from .support import signed_in_client, store
from .test_migrations import upgraded_from

# Shaped like Z-API's own examples (docs: on-message-received-examples).
TEXT_FROM_CUSTOMER = {
    "isStatusReply": False,
    "senderLid": "81896604192873@lid",
    "connectedPhone": "554499999999",
    "waitingMessage": False,
    "isEdit": False,
    "isGroup": False,
    "isNewsletter": False,
    "instanceId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "messageId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "phone": "5544999999999",
    "fromMe": False,
    "momment": 1632228638000,
    "status": "RECEIVED",
    "chatName": "name",
    "senderName": "name",
    "participantPhone": None,
    "participantLid": None,
    "broadcast": False,
    "type": "ReceivedCallback",
    "text": {"message": "test"},
}
CALL_FROM_A_LID = {
    "chatLid": "999999999999@lid",
    "isGroup": False,
    "isNewsletter": False,
    "instanceId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "messageId": "1779374011-59",
    "phone": "999999999999@lid",
    "connectedPhone": "5544999999999",
    "fromMe": False,
    "fromApi": False,
    "momment": 1779374147000,
    "status": "RECEIVED",
    "participantLid": None,
    "type": "ReceivedCallback",
    "notification": "CALL_RECEIVED",
    "notificationParameters": [],
    "callId": "F44E0E2011E7C784BB9A4AC11749C436",
    "callDirection": "incoming",
    "isVideo": False,
}
GROUP_MESSAGE = {
    "isGroup": True,
    "instanceId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "messageId": "3EB0GROUPMESSAGE0001",
    "phone": "120363019502650977-group",
    "chatLid": None,
    "senderLid": "55512345678901@lid",
    "participantPhone": "554488887777",
    "participantLid": "55512345678901@lid",
    "fromMe": False,
    "momment": 1777494000000,
    "status": "RECEIVED",
    "type": "ReceivedCallback",
    "text": {"message": "oi"},
}


def key(value: str) -> str:
    return phones.reversed_key(phones.stored_key(value))


def body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


# -- extraction ---------------------------------------------------------------------------


def test_every_lid_field_is_extracted_as_a_search_key():
    customer = parse(body(TEXT_FROM_CUSTOMER))
    assert customer.sender_lid_key_reversed == "dil@37829140669818"
    assert customer.chat_lid_key_reversed is None
    assert customer.participant_lid_key_reversed is None
    call = parse(body(CALL_FROM_A_LID))
    assert call.chat_lid_key_reversed == key("999999999999@lid") == "dil@999999999999"
    assert call.phone_key_reversed == "dil@999999999999"
    group = parse(body(GROUP_MESSAGE))
    assert group.participant_lid_key_reversed == key("55512345678901@lid")
    assert group.sender_lid_key_reversed == key("55512345678901@lid")
    # Case and stray spaces do not make another LID.
    loud = parse(body({**TEXT_FROM_CUSTOMER, "senderLid": " 81896604192873@LID "}))
    assert loud.sender_lid_key_reversed == customer.sender_lid_key_reversed
    for odd in (None, 42, ["x"], {"lid": 1}, ""):
        assert parse(body({**TEXT_FROM_CUSTOMER, "senderLid": odd})).phone_lids == ()


def test_a_callback_that_names_a_person_both_ways_gives_the_pair():
    customer = parse(body(TEXT_FROM_CUSTOMER))
    assert customer.phone_lids == ((key("5544999999999"), key("81896604192873@lid")),)
    with_chat_lid = parse(body({**TEXT_FROM_CUSTOMER, "chatLid": "81896604192873@lid"}))
    assert with_chat_lid.phone_lids == customer.phone_lids  # one pair, said twice
    group = parse(body(GROUP_MESSAGE))
    assert group.phone_lids == ((key("554488887777"), key("55512345678901@lid")),)


def test_no_pair_where_the_lid_may_be_someone_else():
    # Our own message: its senderLid is our number's, not the customer's.
    ours = parse(body({**TEXT_FROM_CUSTOMER, "fromMe": True}))
    assert ours.phone_lids == ()
    # A chat that is only a LID has no number to pair it with.
    assert parse(body(CALL_FROM_A_LID)).phone_lids == ()
    # A group's own id is no person's number.
    group_only = {**GROUP_MESSAGE, "participantPhone": None, "chatLid": "777@lid"}
    assert parse(body(group_only)).phone_lids == ()
    # Only a ReceivedCallback names people this way.
    status = {**TEXT_FROM_CUSTOMER, "type": "MessageStatusCallback", "ids": ["X"]}
    assert parse(body(status)).phone_lids == ()


# -- search -------------------------------------------------------------------------------


@pytest.fixture
def browse(any_db_app):
    """A signed-in client on SQLite and on PostgreSQL."""
    return signed_in_client(any_db_app, "ana", "admin")


def api_ids(client, **params) -> list[int]:
    answer = client.get("/api/deliveries", query_string=params)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return [item["id"] for item in answer.get_json()["items"]]


def test_a_lid_is_found_in_whichever_field_carried_it(browse):
    sender = store(TEXT_FROM_CUSTOMER).id
    chat = store(CALL_FROM_A_LID).id
    member = store(GROUP_MESSAGE).id
    store({**TEXT_FROM_CUSTOMER, "messageId": "other", "senderLid": "1234567@lid"})
    assert api_ids(browse, phone="81896604192873@lid") == [sender]
    assert api_ids(browse, phone="999999999999@LID") == [chat]
    assert api_ids(browse, phone="55512345678901@lid") == [member]


def test_a_number_finds_a_lid_only_callback_after_another_carried_both(browse, any_db_app):
    lid_only = {
        **CALL_FROM_A_LID,
        "phone": "81896604192873@lid",
        "chatLid": "81896604192873@lid",
        "messageId": "lid-only-1",
    }
    first = store(lid_only).id
    assert api_ids(browse, phone="44 99999-9999") == []
    both = store(TEXT_FROM_CUSTOMER).id  # phone and senderLid of the same customer
    assert api_ids(browse, phone="44 99999-9999") == [both, first]
    assert api_ids(browse, phone="9999-9999") == [both, first]  # the end of the number too
    # Only on the instance that told us: another instance's LID-only chat is not this one.
    elsewhere = store({**lid_only, "instanceId": "another", "messageId": "lid-only-2"}).id
    assert elsewhere not in api_ids(browse, phone="44 99999-9999")
    # The map holds each pair once, however often it is seen.
    store({**TEXT_FROM_CUSTOMER, "messageId": "again", "chatLid": "81896604192873@lid"})
    with any_db_app.app_context(), db.reading() as session:
        pairs = session.execute(select(PhoneLid.instance_id, PhoneLid.lid_key_reversed)).all()
    assert pairs == [(TEXT_FROM_CUSTOMER["instanceId"], key("81896604192873@lid"))]


def test_a_number_finds_a_message_whose_chat_is_only_its_lid(browse):
    sent_to_lid = {
        "phone": "81896604192873@lid",
        "messageId": "3EB0SENTTOLID0000001",
        "zaapId": "ZAAPSENTTOLID0000001",
        "instanceId": TEXT_FROM_CUSTOMER["instanceId"],
        "type": "DeliveryCallback",
    }
    store(sent_to_lid)
    assert browse.get("/api/messages?phone=44 99999-9999").get_json()["items"] == []
    store(TEXT_FROM_CUSTOMER)
    (found,) = browse.get("/api/messages?phone=44 99999-9999").get_json()["items"]
    assert found["messageId"] == "3EB0SENTTOLID0000001"
    page = browse.get("/search", query_string={"phone": "44 99999-9999"}).get_data(as_text=True)
    assert f'data-message-id="{found["id"]}"' in page


def test_a_group_member_known_only_by_a_lid_is_shown_as_that_lid(browse):
    stored = store({**GROUP_MESSAGE, "participantPhone": None}).id
    item = browse.get(f"/api/deliveries/{stored}").get_json()
    assert item["participant"] == "55512345678901@lid"
    page = browse.get(f"/deliveries/{stored}").get_data(as_text=True)
    assert re.search(r"<dt>Participant</dt><dd>\s*55512345678901@lid\s*</dd>", page)


def test_a_repeat_adds_no_pair_and_a_batch_keeps_each_pair_once(app):
    with app.app_context():
        with db.writing() as session:
            deliveries.record(
                session,
                [parse(body(TEXT_FROM_CUSTOMER)), parse(body({**TEXT_FROM_CUSTOMER, "x": 1}))],
            )
        with db.reading() as session:
            assert len(session.execute(select(PhoneLid.id)).all()) == 1


# -- last seen --------------------------------------------------------------------------

SEEN = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


@contextmanager
def pair_writes():
    """The number of phone_lids rows each statement writing the map inserted or updated."""
    written: list[int] = []

    def note(_connection, cursor, statement, _parameters, _context, _executemany):
        if statement.lstrip().upper().startswith("INSERT INTO PHONE_LIDS"):
            written.append(cursor.rowcount)

    event.listen(db.engine, "after_cursor_execute", note)
    try:
        yield written
    finally:
        event.remove(db.engine, "after_cursor_execute", note)


def seen_again(at: datetime) -> int:
    """Record the customer's pair as carried again at ``at``; how many rows that wrote."""
    with pair_writes() as written, db.writing() as session:
        lids.record(session, [parse(body(TEXT_FROM_CUSTOMER))], at)
    (rows,) = written
    return rows


def seen_at() -> datetime:
    with db.reading() as session:
        return session.scalars(select(PhoneLid.seen_at)).one()


def test_a_pair_seen_again_is_rewritten_at_most_once_a_day(any_db_app):
    assert seen_again(SEEN) == 1
    assert seen_at() == SEEN
    # The same day: the upsert finds the pair and writes nothing, however often it runs.
    assert seen_again(SEEN + timedelta(hours=13, minutes=59)) == 0
    assert seen_at() == SEEN
    # The next day it is seen anew, once.
    assert seen_again(SEEN + timedelta(days=1)) == 1
    assert seen_again(SEEN + timedelta(days=1, hours=1)) == 0
    assert seen_at() == SEEN + timedelta(days=1)
    # A late writer (a clock behind) never moves it back.
    assert seen_again(SEEN - timedelta(days=3)) == 0
    assert seen_at() == SEEN + timedelta(days=1)


def test_storing_a_callback_marks_its_pair_seen_when_it_arrived(any_db_app):
    before = utcnow()
    store(TEXT_FROM_CUSTOMER)
    first = seen_at()
    assert before <= first <= utcnow()
    with db.writing() as session:
        session.execute(update(PhoneLid).values(seen_at=first - timedelta(days=40)))
    store({**TEXT_FROM_CUSTOMER, "messageId": "another message"})
    assert seen_at() >= first


# -- migration ----------------------------------------------------------------------------


def test_callbacks_stored_before_lids_get_their_keys_and_the_map(tmp_path):
    raw = json.dumps(TEXT_FROM_CUSTOMER)
    engine = upgraded_from(
        tmp_path,
        "0006",
        "INSERT INTO deliveries (received_at, dedup_key, receive_count, type, instance_id,"
        " phone, phone_key_reversed, raw) VALUES ('2026-01-01 00:00:00', 'k1', 1,"
        " 'ReceivedCallback', :instance, '5544999999999', :phone_key, :raw),"
        " ('2026-01-01 00:00:01', 'k2', 1, 'ReceivedCallback', :instance,"
        " '999999999999@lid', 'dil@999999999999', :call),"
        " ('2026-01-01 00:00:02', 'k3', 1, 'X', NULL, NULL, NULL, 'not JSON')",
        instance=TEXT_FROM_CUSTOMER["instanceId"],
        phone_key=key("5544999999999"),
        raw=raw,
        call=json.dumps(CALL_FROM_A_LID),
    )
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT chat_lid_key_reversed, sender_lid_key_reversed,"
                " participant_lid_key_reversed FROM deliveries ORDER BY id"
            )
        ).all()
        pairs = connection.execute(
            text("SELECT instance_id, phone_key_reversed, lid_key_reversed FROM phone_lids")
        ).all()
    assert [tuple(row) for row in rows] == [
        (None, "dil@37829140669818", None),
        ("dil@999999999999", None, None),
        (None, None, None),
    ]
    assert [tuple(pair) for pair in pairs] == [
        (TEXT_FROM_CUSTOMER["instanceId"], key("5544999999999"), "dil@37829140669818")
    ]
    engine.dispose()


def test_pairs_stored_before_0010_count_as_seen_when_it_runs(tmp_path):
    before = utcnow()
    engine = upgraded_from(
        tmp_path,
        "0008",
        "INSERT INTO phone_lids (instance_id, phone_key_reversed, lid_key_reversed)"
        " VALUES ('I1', :phone_key, 'dil@37829140669818')",
        phone_key=key("5544999999999"),
    )
    with engine.connect() as connection:
        (stored,) = connection.execute(text("SELECT seen_at FROM phone_lids")).scalars()
    engine.dispose()
    seen = datetime.fromisoformat(stored).replace(tzinfo=UTC)
    assert before <= seen <= utcnow()
