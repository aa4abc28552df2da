"""Alembic environment: runs on the connection the dashboard passes, or builds the app."""

from alembic import context

from dashboard.models import Base


def run_migrations(connection) -> None:
    """Run the pending migrations on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters tables by copying them; batch mode does that for us.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; run them on a database.")

connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    # Called from the `alembic` command line: the app knows which database to use.
    from dashboard import create_app
    from dashboard.extensions import db

    create_app({"AUTO_MIGRATE": False})
    with db.engine.connect() as own_connection:
        run_migrations(own_connection)
        own_connection.commit()
