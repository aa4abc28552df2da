import json
import threading

from sqlalchemy import func, select

from dashboard import deliveries
from dashboard.extensions import callback_writer, db
from dashboard.models import Delivery, StatusMessageId
from dashboard.payloads import parse

from .support import FAILED, SEED, STATUS, store, store_all


def count(model):
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_callback_is_stored_with_its_raw_body_and_columns(app):
    recorded = store(FAILED)
    assert recorded.duplicate is False
    with db.reading() as session:
        row = session.get(Delivery, recorded.id)
    assert json.loads(row.raw) == FAILED
    assert (row.type, row.phone, row.error, row.momment) == (
        "DeliveryCallback",
        "554499999999",
        "Phone number does not exist",
        1777494091684,
    )
    assert row.received_at.tzinfo is not None
    assert row.receive_count == 1


def test_a_repeat_stores_nothing_new_and_counts_the_receipt(app):
    first = store(SEED)
    again = store(dict(reversed(list(SEED.items()))))
    assert again == (first.id, True)
    assert count(Delivery) == 1
    with db.reading() as session:
        assert session.get(Delivery, first.id).receive_count == 2


def test_repeats_within_one_batch_are_folded(app):
    (existing,) = store_all([SEED])
    batch = [FAILED, SEED, FAILED, STATUS, FAILED]
    results = store_all(batch)
    ids = [result.id for result in results]
    assert ids[0] == ids[2] == ids[4] != ids[3]
    assert ids[1] == existing.id
    assert [result.duplicate for result in results] == [False, True, True, False, True]
    assert count(Delivery) == 3
    with db.reading() as session:
        assert session.get(Delivery, ids[0]).receive_count == 3
        assert session.get(Delivery, existing.id).receive_count == 2
        assert session.get(Delivery, ids[0]).id < session.get(Delivery, ids[3]).id


def test_status_ids_go_to_the_child_table_once(app):
    recorded = store(STATUS)
    store(STATUS)
    with db.reading() as session:
        rows = session.scalars(
            select(StatusMessageId.message_id).where(StatusMessageId.delivery_id == recorded.id)
        ).all()
    assert sorted(rows) == sorted(STATUS["ids"])


def test_other_callback_types_are_stored_raw(app):
    for callback_type in ("ReceivedCallback", "ConnectedCallback", "SomethingNew"):
        store({"type": callback_type, "instanceId": "x", "momment": 1580163342})
    with db.reading() as session:
        types = session.scalars(select(Delivery.type).order_by(Delivery.id)).all()
        moments = session.scalars(select(Delivery.momment)).all()
    assert types == ["ReceivedCallback", "ConnectedCallback", "SomethingNew"]
    assert moments == [1580163342000] * 3


def test_last_received_at_follows_the_newest_row(app):
    with db.reading() as session:
        assert deliveries.last_received_at(session) is None
    store(SEED)
    with db.reading() as session:
        assert deliveries.last_received_at(session) is not None


def test_batch_writer_folds_concurrent_callbacks_into_few_transactions(app):
    payloads = [{**SEED, "messageId": f"M{i}"} for i in range(200)]
    results = [None] * len(payloads)

    def submit(index):
        callback = parse(json.dumps(payloads[index]).encode())
        results[index] = callback_writer.store(callback, timeout=60)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({result.id for result in results}) == 200
    assert not any(result.duplicate for result in results)
    assert count(Delivery) == 200
