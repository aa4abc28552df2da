"""Payload examples and helpers shared by the tests."""

import base64
import functools
import hashlib
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.exc import OperationalError

from dashboard import deliveries
from dashboard.extensions import db
from dashboard.payloads import parse

SEED = {
    "phone": "554499999999",
    "zaapId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "messageId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "type": "DeliveryCallback",
    "instanceId": "instance.id",
}
FAILED = {
    "phone": "554499999999",
    "messageId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "error": "Phone number does not exist",
    "instanceId": "instance.id",
    "zaapId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "momment": 1777494091684,
    "type": "DeliveryCallback",
}
STATUS = {
    "instanceId": "instance.id",
    "status": "READ",
    "ids": ["999999999999999999999", "888888888888888888888"],
    "momment": 1632234645000,
    "phoneDevice": 0,
    "phone": "5544999999999",
    "type": "MessageStatusCallback",
    "isGroup": False,
}
TOKEN = "test-token-0123456789abcdefABCDEF"
# The server the PostgreSQL tests use; its database `test` is only where they connect to
# create their own.
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
# Each test run works in a database of its own, so that runs side by side never drop each
# other's tables; it is made on first use and dropped when the run ends.
POSTGRES_DATABASE = f"zapi_dashboard_test_{os.getpid()}"
POSTGRES_URL = f"{POSTGRES_SERVER}/{POSTGRES_DATABASE}"
# The database the whole suite runs on: "sqlite" (each data dir's own file, the default) or
# "postgresql" (`pytest --database=postgresql`: each data dir gets a schema of its own in
# this run's database, so tests stay as isolated as with one SQLite file each).
SUITE_DATABASE = {"name": "sqlite"}
DEADLINE_SECONDS = 60


def post_json(client, path, payload, **kwargs):
    """POST ``payload`` as JSON through a Flask test client."""
    return client.post(path, data=json.dumps(payload), content_type="application/json", **kwargs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, deadline=DEADLINE_SECONDS, message="condition"):
    """Poll ``condition`` until it returns a truthy value or the deadline passes."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline}s waiting for {message}")


@dataclass
class Server:
    """A running ``zapi-dashboard serve`` subprocess."""

    process: subprocess.Popen
    base_url: str
    data_dir: Path
    log_path: Path

    @property
    def webhook_url(self) -> str:
        """The full webhook URL, token included."""
        return f"{self.base_url}/webhooks/{TOKEN}"

    def log(self) -> str:
        """Everything the server has printed so far."""
        return self.log_path.read_text(errors="replace")


def port_of(server: Server) -> int:
    """The port ``server`` listens on."""
    return int(server.base_url.rsplit(":", 1)[1])


def request_head(port: int, framing: str) -> bytes:
    """A webhook POST's request line and headers, ``framing`` being the body's header."""
    return (
        f"POST /webhooks/{TOKEN} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAccept-Language: en\r\n{framing}\r\n\r\n"
    ).encode()


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends on ``connection`` until it closes it."""
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    return answer


def cli_command(*args: str) -> list[str]:
    """The installed ``zapi-dashboard`` console script with ``args``."""
    return [str(Path(sys.executable).with_name("zapi-dashboard")), *args]


def start_server(
    data_dir: Path,
    *extra: str,
    env: dict | None = None,
    name: str = "server",
    port: int | None = None,
    open_files: int | None = None,
) -> Server:
    """Start ``zapi-dashboard serve`` (on a free port by default); wait for /healthz.

    A variable given as None in ``env`` is left unset (say, the webhook token);
    ``open_files`` lowers the limit on open files the server starts with.
    """
    port = port or free_port()
    limit = None if open_files is None else functools.partial(_limit_open_files, open_files)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"{name}.log"
    environment = child_env(data_dir, **{"DASHBOARD_WEBHOOK_TOKEN": TOKEN, **(env or {})})
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            cli_command("serve", "--port", str(port), *extra),
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limit,
        )
    server = Server(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    wait_until_healthy(server)
    return server


def _limit_open_files(soft: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def wait_until_healthy(server: Server, verify: str | bool = True) -> None:
    """Wait until ``server`` answers /healthz; stop it and fail if it exits or never does."""

    def healthy():
        if server.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.log()}")
        try:
            response = requests.get(f"{server.base_url}/healthz", verify=verify, timeout=10)
        except (requests.ConnectionError, requests.Timeout):
            # A loaded machine can take long over a first TLS handshake: ask again.
            return False
        return response.status_code == 200

    try:
        wait_until(healthy, message=f"{server.base_url}/healthz to answer")
    except BaseException:
        stop_server(server)
        raise


def stop_server(server: Server) -> None:
    """Stop the server and every worker it started."""
    if server.process.poll() is None:
        os.killpg(server.process.pid, 15)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, 9)
            server.process.wait(timeout=30)


PASSWORD = "correct horse battery"
CSRF_FIELD = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = CSRF_FIELD.search(html) or re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def make_user(username: str, role: str = "admin", password: str = PASSWORD):
    """Create an account directly in the database of the current app."""
    from dashboard.accounts import users as accounts
    from dashboard.extensions import db

    with db.writing() as session:
        return accounts.create_user(session, username, password, role)


def sign_in(client, username: str, password: str = PASSWORD, next_path: str | None = None):
    """Sign in through the real form, CSRF token included; returns the response."""
    page = client.get("/login").get_data(as_text=True)
    url = "/login" if next_path is None else f"/login?next={next_path}"
    return client.post(
        url, data={"username": username, "password": password, "csrf_token": csrf_token(page)}
    )


def create_user_with_cli(data_dir: Path, username: str, password: str, role: str = "admin") -> str:
    """Add an account with `zapi-dashboard create-user --password-stdin`; return its output."""
    result = subprocess.run(
        cli_command("create-user", username, "--role", role, "--password-stdin"),
        input=password + "\n",
        env=child_env(data_dir, DASHBOARD_WEBHOOK_TOKEN=TOKEN),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def store(payload: dict):
    """Store one callback straight through the domain; returns its Recorded."""
    (recorded,) = store_all([payload])
    return recorded


def store_all(payloads: list[dict]):
    """Store callbacks in one write transaction; returns their Recorded, in order."""
    with db.writing() as session:
        return deliveries.record(session, [parse(json.dumps(p).encode()) for p in payloads])


def reset_postgres():
    """Drop every table of this run's database, or skip the test when no PostgreSQL answers."""
    try:
        _create_run_database()
        engine = create_engine(POSTGRES_URL)
        with engine.begin() as connection:
            # Every table, ours and Alembic's, so each test starts from an empty database.
            existing = MetaData()
            existing.reflect(connection)
            existing.drop_all(connection)
    except (OperationalError, ImportError) as exc:
        missing(f"PostgreSQL is not reachable at {POSTGRES_SERVER}: {exc}")
    engine.dispose()


def _maintenance_engine():
    # CREATE and DROP DATABASE cannot run inside a transaction.
    return create_engine(f"{POSTGRES_SERVER}/test", isolation_level="AUTOCOMMIT")


@functools.cache
def _create_run_database() -> None:
    engine = _maintenance_engine()
    try:
        with engine.connect() as connection:
            names = connection.scalars(text("SELECT datname FROM pg_database")).all()
            for name in names:
                # A run that was killed leaves its database behind; its process is gone.
                pid = name.removeprefix("zapi_dashboard_test_")
                if name != pid and pid.isdigit() and not _process_exists(int(pid)):
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if POSTGRES_DATABASE not in names:
                connection.execute(text(f'CREATE DATABASE "{POSTGRES_DATABASE}"'))
    finally:
        engine.dispose()


def drop_run_database() -> None:
    """Drop this run's PostgreSQL database, if it made one."""
    try:
        engine = _maintenance_engine()
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{POSTGRES_DATABASE}" WITH (FORCE)'))
        engine.dispose()
    except (OperationalError, ImportError):
        pass  # no PostgreSQL here: nothing was made


def on_postgres() -> bool:
    """Whether this run of the suite stores everything on PostgreSQL."""
    return SUITE_DATABASE["name"] == "postgresql"


def database_for(data_dir: Path | str) -> str | None:
    """The DATABASE_URL of an app on ``data_dir`` in this run: None means its SQLite file."""
    if not on_postgres():
        return None
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:20]
    schema = f"data_{digest}"
    _create_run_database()
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


def database_url(data_dir: Path | str) -> str:
    """The database that an app or server on ``data_dir`` uses in this run."""
    return database_for(data_dir) or f"sqlite:///{Path(data_dir) / 'dashboard.sqlite3'}"


def query(data_dir: Path | str, sql: str, **params) -> list[tuple]:
    """The rows of ``sql`` (named ``:params``) on the database of ``data_dir``."""
    engine = create_engine(database_url(data_dir))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


def child_env(data_dir: Path | str, **variables: str | None) -> dict[str, str]:
    """The environment of a command working on ``data_dir``.

    Only ``variables`` of the DASHBOARD_* kind are passed (a None value leaves one unset),
    and on a PostgreSQL run the database that stands for ``data_dir``.
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    environment = {**inherited, "DASHBOARD_DATA_DIR": str(data_dir)}
    url = database_for(data_dir)
    if url:
        environment["DASHBOARD_DATABASE_URL"] = url
    environment.update(variables)
    return {key: value for key, value in environment.items() if value is not None}


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def missing(reason: str) -> None:
    """Skip the calling test (or module) for want of ``reason``; in CI, where it must be, fail."""
    # CI installs and starts every service and program the tests use (.ci/run), so there a
    # missing one is a failure, not a skip.
    if os.environ.get("CI_REQUIRE_SERVICES"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def english_client(app):
    """A Flask test client of ``app`` that asks for English pages and messages."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def signed_in_client(app, username: str = "vera", role: str = "viewer"):
    """An English test client of ``app``, signed in as a new user ``username``."""
    make_user(username, role)
    client = english_client(app)
    assert sign_in(client, username).status_code == 302
    return client


def secret_forms(secret: str) -> list[str]:
    """``secret`` as an answer, a log line or a stored text may carry it, in each encoding."""
    url = quote(secret, safe="")
    return [
        secret,
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        "".join(f"\\u{ord(character):04X}" for character in secret),
        url,
        re.sub("%[0-9A-F]{2}", lambda escape: escape[0].lower(), url),
        "".join(f"%{byte:02x}" for byte in secret.encode()),
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(f"https://h/webhooks/{secret}".encode()).decode(),
    ]


def database_bytes(data_dir: Path | str) -> bytes:
    """What the database of ``data_dir`` holds: its SQLite file and -wal as they are on the
    disk, or on PostgreSQL every row of every table as text."""
    if on_postgres():
        tables = query(
            data_dir, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        rows = [
            row
            for (table,) in tables
            for row in query(data_dir, f'SELECT t::text FROM "{table}" t')
        ]
        return "\n".join(text for (text,) in rows).encode()
    database = Path(data_dir) / "dashboard.sqlite3"
    files = (database, Path(f"{database}-wal"))
    return b"".join(path.read_bytes() for path in files if path.is_file())
