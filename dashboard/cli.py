"""The ``zapi-dashboard`` command: serve, webhook-url, db upgrade, accounts, prune, backups."""

import os
import subprocess
import sys
from pathlib import Path

import click
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from . import backup, create_app, leases, migrate, retention
from .accounts import users as accounts
from .config import MAX_RETENTION_DAYS, ConfigError
from .extensions import db
from .logs import database_reason
from .server import gunicorn as server
from .server import lock as server_lock
from .server import open_files
from .settings import store as settings

# Where `serve` listens by default, and what `webhook-url` falls back to.
LOCAL_URL = "http://127.0.0.1:8000"


def _app(**overrides) -> Flask:
    """Build the app, turning a configuration problem into one clear line."""
    try:
        return create_app(overrides or None)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def public_base(app: Flask, local_url: str) -> str:
    """Where people and Z-API reach the dashboard: DASHBOARD_PUBLIC_URL, else ``local_url``."""
    return (app.config.get("PUBLIC_URL") or local_url).rstrip("/")


def webhook_url(app: Flask, local_url: str) -> str:
    """The full webhook URL for Z-API."""
    return settings.webhook_url(public_base(app, local_url), app.config["WEBHOOK_TOKEN"])


@click.group()
@click.version_option(package_name="zapi-dashboard", message="zapi-dashboard %(version)s")
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
    app = _app(AUTO_MIGRATE=False)  # checks every setting, once, before anything starts
    _claim_data_dir(app)
    problem = server.address_problem(host, port)
    if problem:
        raise click.ClickException(problem)
    _migrate_in_child_process(app)
    local = f"http://{host}:{port}"
    click.echo(f"zapi-dashboard listening on {local}")
    click.echo(f"Z-API webhook URL (keep it secret): {webhook_url(app, local)}")
    if not app.config.get("PUBLIC_URL"):
        click.echo(
            "Set DASHBOARD_PUBLIC_URL to the https address Z-API reaches to get the "
            "public webhook URL."
        )
    with db.writing() as transaction:
        token = (
            None if accounts.count_users(transaction) else accounts.issue_setup_token(transaction)
        )
    if token:
        click.echo(
            f"No account exists yet. Create the first admin (link valid 24 h, once): "
            f"{public_base(app, local)}/setup/{token}"
        )
    needed = open_files.files_needed(app.config["SOCKETS_PER_WORKER"], server.WORKER_CONNECTIONS)
    too_few_files = open_files.raise_limit(needed)
    if too_few_files:
        click.echo(f"Warning: {too_few_files}", err=True)
    db.engine.dispose()  # workers open their own connections
    server.run(server.server_options(host, port, workers, threads), app)


def _migrate_in_child_process(app: Flask) -> None:
    """Run ``db upgrade`` in a child, so the server's processes never carry Alembic."""
    # -P keeps the working directory off the child's import path: started inside a
    # checkout, it must still run this installed code. The data dir is passed on, so the
    # child opens the very database this process serves.
    environment = {**os.environ, "DASHBOARD_DATA_DIR": app.config["DATA_DIR"]}
    migration = subprocess.run(
        [sys.executable, "-P", "-m", "dashboard", "db", "upgrade"], env=environment, check=False
    )
    if migration.returncode:
        sys.exit(migration.returncode)  # the child has said what went wrong


@main.command("webhook-url")
def webhook_url_command() -> None:
    """Print the webhook URL to configure in Z-API."""
    app = _app()
    click.echo(webhook_url(app, LOCAL_URL))
    if app.config.get("PUBLIC_URL"):
        click.echo(f"Built from DASHBOARD_PUBLIC_URL ({app.config['PUBLIC_URL']}).", err=True)
    else:
        click.echo(
            f"DASHBOARD_PUBLIC_URL is not set, so this uses the local address {LOCAL_URL}; "
            "Z-API needs the public https one: set DASHBOARD_PUBLIC_URL.",
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
        raise click.ClickException(f"Migration failed: {database_reason(exc)}") from None
    click.echo(f"Database is at revision {revision}.")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.read()
        # Like `echo pw |`: one trailing newline is the shell's, not the password's.
        return text[:-1] if text.endswith("\n") else text
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@main.command("create-user")
@click.argument("name")
@click.option("--role", type=click.Choice(accounts.ROLES), default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(name: str, role: str, password_stdin: bool) -> None:
    """Add an account."""
    _app()
    password = _read_password(password_stdin)
    try:
        with db.writing() as transaction:
            user = accounts.create_user(transaction, name, password, role)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {user.role} {user.username}.")


@main.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password(name: str, password_stdin: bool) -> None:
    """Give an account a new password (its open sessions end)."""
    _app()
    password = _read_password(password_stdin)
    try:
        with db.writing() as transaction:
            user = accounts.find_user(transaction, name)
            if user is None:
                raise click.ClickException(f"There is no account called {name!r}.")
            accounts.set_password(transaction, user, password)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Password of {user.username} changed.")


@main.command("prune")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_RETENTION_DAYS),
    help="Delete what is older than this many days  [default: DASHBOARD_RETENTION_DAYS].",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def prune_command(days: int | None, dry_run: bool) -> None:
    """Delete what is older than the retention period: callbacks, messages, LIDs, refusals."""
    app = _app()
    if days is None:
        days = app.config["RETENTION_DAYS"]
    if days == 0:
        click.echo("Retention is off (DASHBOARD_RETENTION_DAYS=0); nothing to prune.")
        return
    try:
        result = retention.prune(db, days, dry_run=dry_run)
        if result is None:
            with db.reading() as transaction:
                lease = leases.get(transaction, retention.LEASE_NAME)
                holder = lease.holder if lease else None
            raise click.ClickException(
                f"Another process ({holder}) is pruning right now; try again in a few minutes."
            )
    except SQLAlchemyError as exc:
        raise click.ClickException(f"Pruning failed: {database_reason(exc)}") from None
    cutoff = result.cutoff.isoformat(timespec="seconds").replace("+00:00", "Z")
    what = (
        f"{_counted(result.deleted, 'callback')} received before {cutoff}, "
        f"{_counted(result.messages, 'message')} left without callbacks, "
        f"{_counted(result.lid_pairs, 'phone-to-LID pair')} not seen since and "
        f"{_counted(result.rejected, 'refused webhook request')} received before then"
    )
    if dry_run:
        click.echo(f"{what} would be deleted (dry run).")
    elif result.finished:
        click.echo(f"Deleted {what}.")
    else:
        raise click.ClickException(
            f"Deleted {what}, then stopped: another process took over the job."
        )


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _claim_data_dir(app: Flask) -> None:
    """Stop a second server (or one started during a restore) on the same SQLite data dir."""
    # Instances sharing a PostgreSQL database may share a data dir as well: nothing restores
    # into it (pg_restore does), so there is nothing to guard.
    if not db.is_sqlite:
        return
    try:
        server_lock.hold_while_running(app.config["DATA_DIR"])
    except server_lock.Held as held:
        raise click.ClickException(
            f"{held}; stop it first, or give this server a DASHBOARD_DATA_DIR of its own."
        ) from None
    except OSError as exc:
        lock = f"{app.config['DATA_DIR']}/{server_lock.LOCK_NAME}"
        raise click.ClickException(f"Cannot open {lock}: {exc.strerror}.") from None


# Secrets the environment sets win over the data dir's files, in a backup as anywhere.
ENVIRONMENT_SECRETS = {
    "DASHBOARD_WEBHOOK_TOKEN": "webhook_token",
    "DASHBOARD_SECRET_KEY": "secret_key",
}


def _secrets_from_environment() -> dict[str, str]:
    return {name: file for name, file in ENVIRONMENT_SECRETS.items() if os.environ.get(name)}


@main.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
def backup_command(path: Path) -> None:
    """Write one file with the database and the data dir's secrets; safe while serving."""
    app = _app(AUTO_MIGRATE=False)
    try:
        made = backup.create(app.config["DATABASE_URL"], app.config["DATA_DIR"], path)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    noun = "callback" if made.callbacks == 1 else "callbacks"
    click.echo(
        f"Backup of {made.callbacks:,} {noun} (schema {made.revision}) written to {made.path} "
        f"({backup.human_size(made.size)})."
    )
    for name in _secrets_from_environment():
        click.echo(f"{name} is set in the environment, not in the backup: keep it with the backup.")


@main.command("restore")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--replace",
    is_flag=True,
    help="Keep the data dir's database and secrets aside (*.before-restore-<time>) and restore.",
)
def restore_command(path: Path, replace: bool) -> None:
    """Put a backup into the data dir (server stopped) and migrate it to this version."""
    app = _app(AUTO_MIGRATE=False)
    try:
        done = backup.restore(path, app.config["DATA_DIR"], app.config["DATABASE_URL"], replace)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    noun = "callback" if done.callbacks == 1 else "callbacks"
    click.echo(
        f"Restored {done.callbacks:,} {noun} (schema {done.backup_revision} → "
        f"{done.revision}) into {done.data_dir}; start the server."
    )
    if done.kept_aside:
        names = ", ".join(path.name for path in done.kept_aside)
        folder = done.kept_aside[0].parent
        click.echo(f"The previous {names} are kept in {folder} as <name>{done.kept_suffix}.")
    for name, file in _secrets_from_environment().items():
        click.echo(f"{name} is set in the environment and wins over the restored {file}.")
