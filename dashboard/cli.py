"""The ``zapi-dashboard`` command: serve, webhook-url and database upgrades."""

import click
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from . import create_app, migrate, server
from .config import ConfigError
from .extensions import db


def _app(**overrides) -> Flask:
    """Build the app, turning a configuration problem into one clear line."""
    try:
        return create_app(overrides or None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def webhook_url(app: Flask, base_url: str) -> str:
    """The full webhook URL for Z-API, on ``base_url`` (or DASHBOARD_PUBLIC_URL when set)."""
    public = app.config.get("PUBLIC_URL") or base_url
    return f"{public.rstrip('/')}/webhooks/{app.config['WEBHOOK_TOKEN']}"


@click.group()
def main() -> None:
    """Self-hosted dashboard for Z-API delivery callbacks."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=server.DEFAULT_WORKERS,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes.",
)
@click.option(
    "--threads",
    default=server.DEFAULT_THREADS,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Threads per worker.",
)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Apply migrations and run the production server (gunicorn)."""
    app = _app()  # validates the configuration and migrates before any worker starts
    db.engine.dispose()  # workers open their own connections
    local = f"http://{host}:{port}"
    click.echo(f"zapi-dashboard listening on {local}")
    click.echo(f"Z-API webhook URL (keep it secret): {webhook_url(app, local)}")
    if not app.config.get("PUBLIC_URL"):
        click.echo(
            "Set DASHBOARD_PUBLIC_URL to the https address Z-API reaches to get the "
            "public webhook URL."
        )
    server.run(server.server_options(host, port, workers, threads))


@main.command("webhook-url")
def webhook_url_command() -> None:
    """Print the webhook URL to configure in Z-API."""
    app = _app()
    click.echo(webhook_url(app, "http://127.0.0.1:8000"))
    if not app.config.get("PUBLIC_URL"):
        click.echo(
            "Note: DASHBOARD_PUBLIC_URL is not set, so this is the local address; "
            "Z-API needs the public https one.",
            err=True,
        )


@main.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    _app(AUTO_MIGRATE=False)
    try:
        revision = migrate.upgrade(db.engine)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"Migration failed: {getattr(exc, 'orig', exc)}") from None
    click.echo(f"Database is at revision {revision}.")
