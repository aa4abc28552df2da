"""deliveries.search and friends, on a SQLite file and on PostgreSQL."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from dashboard import deliveries
from dashboard.deliveries import Filters
from dashboard.extensions import db
from dashboard.models import Delivery
from dashboard.phones import parse_query

from .support import FAILED, SEED, STATUS, store, store_all


def callback(n: int, phone: str, **extra) -> dict:
    return {**SEED, "messageId": f"M{n}", "zaapId": f"Z{n}", "phone": phone, **extra}


def search(filters: Filters, **kwargs):
    with db.reading() as session:
        page = deliveries.search(session, filters, **{"limit": 50, **kwargs})
        return [row.id for row in page.items], page.older, page.newer


def phone(text: str) -> Filters:
    return Filters(phone=parse_query(text))


def test_a_number_typed_any_way_finds_both_ninth_digit_forms(any_db_app):
    twelve = store(callback(1, "554499999999")).id
    thirteen = store(callback(2, "5544999999999")).id
    store(callback(3, "554488888888"))
    for typed in ("+55 (44) 9 9999-9999", "044 9999-9999", "44999999999", "9999-9999"):
        assert search(phone(typed))[0] == [thirteen, twelve], typed


def test_a_group_member_is_found_by_their_number(any_db_app):
    in_group = store(
        {**STATUS, "phone": "120363019502650977-group", "participant": "5511988887777"}
    ).id
    assert search(phone("11 98888-7777"))[0] == [in_group]
    assert search(phone("120363019502650977-GROUP"))[0] == [in_group]
    assert search(phone("8888-7777"))[0] == [in_group]


def test_suffix_matches_only_the_end_of_numbers(any_db_app):
    ending = store(callback(1, "5511912345678")).id
    store(callback(2, "5511956781234"))
    assert search(phone("5678"))[0] == [ending]
    assert search(phone("12345678"))[0] == [ending]
    assert search(phone("999999"))[0] == []


def test_filters_combine(any_db_app):
    ok = store(callback(1, "5544999999999")).id
    failed = store({**FAILED, "messageId": "F1", "phone": "5544999999999"}).id
    status = store({**STATUS, "ids": ["M1"]}).id
    other = store(callback(4, "5544999999999", instanceId="other")).id
    assert search(Filters(failed=True))[0] == [failed]
    assert search(Filters(type="MessageStatusCallback"))[0] == [status]
    assert search(Filters(instance="other"))[0] == [other]
    assert search(Filters(phone=parse_query("9999-9999"), instance="instance.id"))[0] == [
        status,
        failed,
        ok,
    ]


def test_date_range(any_db_app):
    old, new = (row.id for row in store_all([callback(1, "5511911112222"), callback(2, "x")]))
    with db.writing() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == old)
            .values(received_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    cut = datetime(2021, 1, 1, tzinfo=UTC)
    assert search(Filters(since=cut))[0] == [new]
    assert search(Filters(until=cut))[0] == [old]
    assert search(Filters(since=cut, until=cut + timedelta(days=36500)))[0] == [new]


def test_keyset_pages_are_stable_while_new_rows_arrive(any_db_app):
    ids = [row.id for row in store_all([callback(n, "5544999999999") for n in range(7)])]
    first, older, newer = search(phone("9999-9999"), limit=3)
    assert (first, newer) == (ids[6:3:-1], None)
    store(callback(100, "5544999999999"))  # arrives while the reader looks at page 1
    second, older2, newer2 = search(phone("9999-9999"), limit=3, before=older)
    assert second == ids[3:0:-1]
    last, older3, _ = search(phone("9999-9999"), limit=3, before=older2)
    assert (last, older3) == ([ids[0]], None)
    back, _, _ = search(phone("9999-9999"), limit=3, after=newer2)
    assert back == ids[6:3:-1]


def test_count_is_capped(any_db_app):
    store_all([callback(n, "5544999999999") for n in range(5)])
    with db.reading() as session:
        assert deliveries.count_matches(session, phone("9999-9999"), cap=10) == 5
        assert deliveries.count_matches(session, phone("9999-9999"), cap=3) == 4


def test_iter_matches_walks_every_row_in_batches(any_db_app):
    ids = [row.id for row in store_all([callback(n, "5544999999999") for n in range(7)])]
    with db.reading() as session:
        batches = [
            [row.id for row in batch]
            for batch in deliveries.iter_matches(session, phone("9999-9999"), batch=3)
        ]
    assert batches == [ids[6:3:-1], ids[3:0:-1], [ids[0]]]


def test_related_callbacks_share_the_message(any_db_app):
    sent = store(callback(1, "5544999999999", messageId="MSG")).id
    status = store({**STATUS, "ids": ["MSG"]}).id
    same_zaap = store(callback(3, "5544999999999", zaapId="Z1", messageId=None)).id
    store(callback(4, "5544999999999"))
    with db.reading() as session:
        assert [row.id for row in deliveries.related(session, deliveries.get(session, sent))] == [
            status,
            same_zaap,
        ]
        assert [row.id for row in deliveries.related(session, deliveries.get(session, status))] == [
            sent
        ]


def test_a_status_is_related_to_its_sibling_statuses(any_db_app):
    sent = store(callback(1, "5544999999999", messageId="M2")).id
    read_both = store({**STATUS, "ids": ["M1", "M2"]}).id
    received_second = store({**STATUS, "status": "RECEIVED", "ids": ["M3", "M2"]}).id
    store({**STATUS, "ids": ["OTHER"]})
    with db.reading() as session:
        shown = deliveries.related(session, deliveries.get(session, received_second))
        assert sorted(row.id for row in shown) == [sent, read_both]
        # Seen from the status naming two messages: the second one's send and status too.
        shown = deliveries.related(session, deliveries.get(session, read_both))
        assert sorted(row.id for row in shown) == [sent, received_second]


def test_prune_deletes_old_rows_and_their_status_ids(any_db_app):
    old = store({**STATUS, "ids": ["OLD"]}).id
    kept = store(callback(1, "5544999999999")).id
    with db.writing() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == old)
            .values(received_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    cutoff = datetime(2021, 1, 1, tzinfo=UTC)
    with db.reading() as session:
        assert deliveries.count_older_than(session, cutoff) == 1
    with db.writing() as session:
        assert deliveries.prune_batch(session, cutoff, size=10) == 1
    with db.writing() as session:
        assert deliveries.prune_batch(session, cutoff, size=10) == 0
    with db.reading() as session:
        assert [row.id for row in deliveries.latest(session, 10)] == [kept]
