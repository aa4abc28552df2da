from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from dashboard import migrate
from dashboard.extensions import db
from dashboard.models import Base


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
