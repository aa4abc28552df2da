import json

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import column, create_engine, insert, inspect, table, text

from dashboard import migrate
from dashboard.extensions import db
from dashboard.messages.states import STATES
from dashboard.models import Base

from .support import POSTGRES_URL, database_url, reset_postgres


def test_models_and_migrations_do_not_drift(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_the_app_starts_on_the_newest_revision(app):
    with db.engine.connect() as connection:
        assert migrate.current_revision(connection) == migrate.head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert {"deliveries", "status_message_ids", "rejected_requests"} <= tables


def test_upgrading_twice_is_harmless(app):
    assert migrate.upgrade(db.engine) == migrate.head_revision()


def upgraded_from(tmp_path, revision, insert, **values):
    """A SQLite file at ``revision`` with the row ``insert`` stored, then upgraded to head."""
    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), revision)
        connection.execute(text(insert), values)
    assert migrate.upgrade(engine) == migrate.head_revision()
    return engine


def test_callbacks_stored_before_search_existed_get_their_search_keys(tmp_path):
    engine = upgraded_from(
        tmp_path,
        "0003",
        "INSERT INTO deliveries (received_at, dedup_key, receive_count, type, phone, raw)"
        " VALUES ('2026-01-01 00:00:00', 'k1', 1, 'MessageStatusCallback',"
        " '120363019502650977-group', :raw)",
        raw='{"type": "MessageStatusCallback", "phone": "120363019502650977-group",'
        ' "participant": "554499999999", "status": "READ"}',
    )
    with engine.connect() as connection:
        keys = connection.execute(
            text("SELECT phone_key_reversed, participant_key_reversed FROM deliveries")
        ).one()
    assert keys == ("puorg-779056205910363021", "9999999994455")
    engine.dispose()


def test_stored_settings_keep_their_values_and_leave_chat_presence_off(tmp_path):
    engine = upgraded_from(
        tmp_path,
        "0004",
        "INSERT INTO zapi_settings (id, instance_id, public_url, set_message_status, updated_at)"
        " VALUES (1, 'ABC123', 'https://dash.example.com', 1, '2026-01-01 00:00:00')",
    )
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT instance_id, public_url, set_chat_presence FROM zapi_settings")
        ).one()
    assert tuple(row) == ("ABC123", "https://dash.example.com", 0)
    columns = {column["name"] for column in inspect(engine).get_columns("zapi_settings")}
    assert "set_message_status" not in columns
    engine.dispose()


def test_callbacks_stored_before_0007_get_the_fields_read_since(tmp_path):
    received = {
        "type": "ReceivedCallback",
        "phone": "120363019502650977-group",
        "status": "RECEIVED",
        "participantPhone": "5544999999999",
        "messageId": "R1",
    }
    status = {"type": "MessageStatusCallback", "status": "READ", "ids": ["M1", "M2"]}
    engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0006")
        for number, (body, message_id) in enumerate([(received, "R1"), (status, None)]):
            connection.execute(
                text(
                    "INSERT INTO deliveries (received_at, dedup_key, receive_count, type,"
                    " message_id, raw) VALUES ('2026-05-01 12:00:00', :key, 1, :type, :mid, :raw)"
                ),
                {
                    "key": f"k{number}",
                    "type": body["type"],
                    "mid": message_id,
                    "raw": json.dumps(body),
                },
            )
    migrate.upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT type, status, participant, message_id FROM deliveries ORDER BY id")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("ReceivedCallback", "RECEIVED", "5544999999999", "R1"),
        ("MessageStatusCallback", "READ", None, "M1"),
    ]


def message_row(number: int, error: str | None, error_code: str | None = None) -> dict:
    """A messages row as 0008 stored it, failed when it has an error."""
    return {
        "instance_id": "I1",
        "message_id": f"M{number}",
        "state": "failed" if error else "queued",
        "first_at": "2026-05-01 12:00:00",
        "error": error,
        "error_code": error_code,
        **{f"{state}_count": 0 for state in STATES},
        "first_delivery_id": number,
        "last_delivery_id": number,
    }


def test_messages_stored_before_0009_get_their_failure_category(tmp_path):
    # More rows than one batch, so that the fill goes on past the first.
    kinds = [
        ("Phone number does not exist", None, "invalid-number"),
        ("Whatsapp rejected sending this message", "SHADOW_BAN", "shadow-ban"),
        ("Ground control to Major Tom", None, "other"),
        (None, None, None),
    ]
    rows = [message_row(n, *kinds[n % len(kinds)][:2]) for n in range(1, 2 * 2000 + 2)]
    engine = create_engine(database_url(tmp_path))
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0008")
        connection.execute(insert(table("messages", *map(column, rows[0]))), rows)
    assert migrate.upgrade(engine) == migrate.head_revision()
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT first_delivery_id, failure_category FROM messages ORDER BY id")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in stored] == [
        (n, kinds[n % len(kinds)][2]) for n in range(1, 2 * 2000 + 2)
    ]


def test_messages_built_from_callbacks_before_0006_get_their_category_and_keep_autoincrement(
    tmp_path,
):
    # 0006 builds messages through today's store, which writes columns added since.
    body = {
        "type": "DeliveryCallback",
        "instanceId": "I1",
        "phone": "5544999999999",
        "messageId": "M1",
        "error": "Timeout on send message",
    }
    engine = upgraded_from(
        tmp_path,
        "0005",
        "INSERT INTO deliveries (received_at, dedup_key, receive_count, type, instance_id,"
        " message_id, error, raw) VALUES ('2026-05-01 12:00:00', 'k1', 1, 'DeliveryCallback',"
        " 'I1', 'M1', 'Timeout on send message', :raw)",
        raw=json.dumps(body),
    )
    with engine.connect() as connection:
        row = connection.execute(text("SELECT state, failure_category FROM messages")).one()
        schema = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
        ).scalar_one()
    engine.dispose()
    assert tuple(row) == ("failed", "timeout")
    # Message ids are never reused: dropping 0006's passing column kept AUTOINCREMENT.
    assert "AUTOINCREMENT" in schema


def test_downgrading_0009_keeps_the_messages_and_their_autoincrement(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'new.sqlite3'}")
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(table("messages", *map(column, message_row(1, "x")))), [message_row(1, "x")]
        )
        command.downgrade(migrate.alembic_config(connection), "0008")
        columns = {column["name"] for column in inspect(connection).get_columns("messages")}
        schema = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'")
        ).scalar_one()
        kept = connection.execute(text("SELECT message_id FROM messages")).scalars().all()
    engine.dispose()
    assert "failure_category" not in columns
    assert "AUTOINCREMENT" in schema
    assert kept == ["M1"]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request, tmp_path):
    """An engine on an empty SQLite file, then on this machine's PostgreSQL, emptied."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")
    else:
        reset_postgres()
        engine = create_engine(POSTGRES_URL)
    yield engine
    engine.dispose()


def test_a_stored_member_known_only_by_a_lid_becomes_the_participant(empty_engine):
    group = {
        "isGroup": True,
        "instanceId": "A20DA9C0183A2D35A260F53F5D2B9244",
        "phone": "120363019502650977-group",
        "fromMe": False,
        "status": "RECEIVED",
        "type": "ReceivedCallback",
        "text": {"message": "oi"},
    }
    lid_only = {**group, "messageId": "R1", "participantPhone": None}
    lid_only["participantLid"] = "55512345678901@lid"
    both = {**lid_only, "messageId": "R2", "participantPhone": "554488887777"}
    neither = {**group, "messageId": "R3", "participantPhone": None, "participantLid": None}
    # Rows as the code of revision 0008 stored them: the LID searchable, no participant.
    rows = [
        (lid_only, None, "dil@10987654321555"),
        (both, "554488887777", "dil@10987654321555"),
        (neither, None, None),
    ]
    with empty_engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0008")
        for number, (body, participant, lid_key) in enumerate(rows):
            connection.execute(
                text(
                    "INSERT INTO deliveries (received_at, dedup_key, receive_count, type,"
                    " message_id, participant, participant_lid_key_reversed, raw)"
                    " VALUES ('2026-05-01 12:00:00', :key, 1, 'ReceivedCallback', :mid,"
                    " :participant, :lid_key, :raw)"
                ),
                {
                    "key": f"k{number}",
                    "mid": body["messageId"],
                    "participant": participant,
                    "lid_key": lid_key,
                    "raw": json.dumps(body),
                },
            )
    assert migrate.upgrade(empty_engine) == migrate.head_revision()
    with empty_engine.connect() as connection:
        shown = connection.execute(
            text("SELECT message_id, participant FROM deliveries ORDER BY id")
        ).all()
    assert [tuple(row) for row in shown] == [
        ("R1", "55512345678901@lid"),
        ("R2", "554488887777"),
        ("R3", None),
    ]
