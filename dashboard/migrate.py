"""Schema migrations: apply Alembic revisions and report the current one."""

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from .paths import resource_dir

# Any constant works; it only has to be the same for every instance sharing a database.
POSTGRES_MIGRATION_LOCK = 0x2A_D1_5B


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at our migrations, bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> str | None:
    """Bring the schema to the newest revision; safe when several processes start at once."""
    # Taking the write lock first serialises concurrent starts on SQLite; the advisory lock
    # does the same on PostgreSQL. The late starters then find nothing left to do.
    with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_MIGRATION_LOCK}
            )
        command.upgrade(alembic_config(connection), "head")
        return current_revision(connection)


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None before the first migration."""
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision this code ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
