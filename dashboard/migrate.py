"""Schema migrations: apply Alembic revisions and report the current one.

Alembic is imported only where a migration runs. ``zapi-dashboard serve`` migrates in a
child process before it loads the app, so the server's long-lived processes never carry
Alembic's memory (about 11 MB in each of them).
"""

from sqlalchemy import Connection, Engine, column, inspect, select, table, text

from .paths import resource_dir

# Any constant works; it only has to be the same for every instance sharing a database.
POSTGRES_MIGRATION_LOCK = 0x2A_D1_5B
# Where Alembic notes the revision a database is at.
VERSION_TABLE = table("alembic_version", column("version_num"))


def alembic_config(connection: Connection | None = None):
    """An Alembic configuration pointing at our migrations, bound to ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> str | None:
    """Bring the schema to the newest revision; safe when several processes start at once."""
    from alembic import command

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
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.scalar(select(VERSION_TABLE.c.version_num))


def head_revision() -> str | None:
    """The newest revision this code ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
