"""Storage on PostgreSQL (the database of multi-instance installs)."""

import json
import threading

from sqlalchemy import func, select

from dashboard.extensions import callback_writer, db
from dashboard.models import Delivery, StatusMessageId
from dashboard.payloads import parse

from .support import SEED, STATUS, store


def test_callbacks_are_stored_once_on_postgres(pg_app):
    first = store(SEED)
    assert store(dict(reversed(list(SEED.items())))) == (first.id, True)
    status = store(STATUS)
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
        ids = session.scalars(
            select(StatusMessageId.message_id).where(StatusMessageId.delivery_id == status.id)
        ).all()
    assert sorted(ids) == sorted(STATUS["ids"])


def test_text_postgres_refuses_is_made_safe(pg_app):
    # PostgreSQL's text holds no NUL; the webhook itself refuses lone surrogates.
    recorded = store({"type": "X", "phone": "55\u00004499", "error": "bad\u0000reason"})
    with db.reading() as session:
        row = session.get(Delivery, recorded.id)
    assert row.phone == "554499"
    assert "\x00" not in row.error


def test_concurrent_writers_on_postgres(pg_app):
    errors = []

    def submit(index):
        try:
            callback_writer.store(parse(json.dumps({**SEED, "messageId": index}).encode()), 60)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 50


def test_models_and_migrations_do_not_drift_on_postgres(pg_app):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from dashboard.models import Base

    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
