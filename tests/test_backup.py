"""`zapi-dashboard backup` and `restore`: a copy taken under load, restored elsewhere, refusals."""

import gzip
import io
import json
import os
import resource
import sqlite3
import stat
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

from dashboard import migrate
from dashboard.cli import main
from dashboard.extensions import db

from .support import (
    POSTGRES_URL,
    SEED,
    TOKEN,
    cli_command,
    free_port,
    reset_postgres,
    start_server,
    stop_server,
    wait_until,
)

# Backups are of the SQLite file; on PostgreSQL its own tools do it (one test here says so).
pytestmark = pytest.mark.sqlite_only

SECRETS = ("secret_key", "webhook_token", "settings_key")
HEAD = migrate.head_revision()  # the schema this version writes
# The first server reads its token from the data dir, as a real one does: the restored
# server can then only know it from the backup.
OWN_TOKEN = {"DASHBOARD_WEBHOOK_TOKEN": None}


@pytest.fixture(autouse=True)
def _close_the_database():
    yield
    if db.engine is not None:
        db.engine.dispose()


def run(*args: str, data_dir: Path, env: dict | None = None, **kwargs):
    """Run the installed command on ``data_dir``, without any other DASHBOARD_ variable."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    return subprocess.run(
        cli_command(*args),
        env={**inherited, "DASHBOARD_DATA_DIR": str(data_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def invoke(monkeypatch, data_dir: Path, *args: str, env: dict | None = None):
    """Run a command in this process (faster than a subprocess) on ``data_dir``."""
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(data_dir))
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, list(args))
    # Anything but click's own exit would have been a traceback for the operator.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def assert_one_error_line(result, *parts: str) -> None:
    """The command failed with exit 1 and said so in one line through click."""
    code = getattr(result, "returncode", getattr(result, "exit_code", None))
    assert code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for part in parts:
        assert part in result.stderr


def make_data_dir(path: Path, revision: str = "head", callbacks: int = 0) -> Path:
    """A data dir with secrets and a database at ``revision`` holding ``callbacks`` rows."""
    from alembic import command
    from cryptography.fernet import Fernet
    from sqlalchemy import create_engine, text

    path.mkdir(parents=True)
    (path / "secret_key").write_text(f"secret-key-of-{path.name}-0123456789\n")
    (path / "webhook_token").write_text(TOKEN + "\n")
    (path / "settings_key").write_text(Fernet.generate_key().decode() + "\n")
    engine = create_engine(f"sqlite:///{path / 'dashboard.sqlite3'}")
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), revision)
        for number in range(callbacks):
            connection.execute(
                text(
                    "INSERT INTO deliveries (received_at, dedup_key, receive_count, type, raw)"
                    " VALUES ('2026-01-01 00:00:00', :key, 1, 'DeliveryCallback', '{}')"
                ),
                {"key": f"key-{number}"},
            )
    engine.dispose()
    return path


def read_database(path: Path, query: str) -> list[tuple]:
    """Rows of ``query`` on the SQLite file ``path``, opened read-only."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Load:
    """Threads posting distinct callbacks to a webhook, noting when each was acknowledged."""

    def __init__(self, url: str, threads: int = 4):
        self.url = url
        self.acknowledged: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._post, args=(number,), daemon=True)
            for number in range(threads)
        ]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def acknowledged_before(self, moment: float) -> set[str]:
        """The messageIds answered 200 before ``moment`` (time.monotonic)."""
        with self._lock:
            return {message_id for at, message_id in self.acknowledged if at < moment}

    def count_between(self, start: float, end: float) -> int:
        """How many callbacks were acknowledged between ``start`` and ``end``."""
        with self._lock:
            return sum(1 for at, _ in self.acknowledged if start <= at <= end)

    def _post(self, number: int) -> None:
        with requests.Session() as session:
            sent = 0
            while not self._stop.is_set():
                sent += 1
                message_id = f"LOAD-{number}-{sent}"
                payload = {**SEED, "messageId": message_id, "zaapId": message_id}
                try:
                    response = session.post(self.url, json=payload, timeout=30)
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))
                    continue
                with self._lock:
                    if response.status_code == 200:
                        self.acknowledged.append((time.monotonic(), message_id))
                    else:
                        self.failures.append(f"{response.status_code} {response.text}")


@pytest.mark.server
def test_a_backup_under_load_restores_every_acknowledged_callback_and_the_webhook_url(tmp_path):
    old, new, archive = tmp_path / "old", tmp_path / "new", tmp_path / "backups" / "b.tar.gz"
    old.mkdir()
    archive.parent.mkdir()
    (old / "webhook_token").write_text(TOKEN + "\n")
    first = start_server(old, "--workers", "1", "--threads", "16", env=OWN_TOKEN)
    try:
        old_url = run("webhook-url", data_dir=old).stdout.strip()
        with Load(first.webhook_url) as load:
            wait_until(lambda: len(load.acknowledged_before(time.monotonic())) >= 50)
            started = time.monotonic()
            acknowledged = load.acknowledged_before(started)
            made = run("backup", str(archive), data_dir=old)
            finished = time.monotonic()
            # The load went on while the backup ran, and after it.
            wait_until(lambda: load.count_between(finished, time.monotonic()) >= 20)
        assert load.failures == []
        assert load.count_between(started, finished) > 0
    finally:
        stop_server(first)

    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("Backup of ") and f"(schema {HEAD}) written to" in made.stdout
    assert made.stdout.strip().endswith(")."), made.stdout
    assert len(made.stdout.splitlines()) == 1
    assert mode(archive) == 0o600
    assert list(archive.parent.iterdir()) == [archive]  # no temporary file left behind

    restored = run("restore", str(archive), data_dir=new)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith("Restored ")
    assert f"(schema {HEAD} → {HEAD}) into {new}; start the server." in restored.stdout
    assert "DASHBOARD_WEBHOOK_TOKEN" not in restored.stdout
    for name in ("dashboard.sqlite3", *SECRETS):
        assert mode(new / name) == 0o600, name
    stored = read_database(new / "dashboard.sqlite3", "SELECT message_id FROM deliveries")
    assert acknowledged <= {message_id for (message_id,) in stored}

    second = start_server(new, "--workers", "1", "--threads", "4", env=OWN_TOKEN, name="again")
    try:
        new_url = run("webhook-url", data_dir=new).stdout.strip()
        assert new_url == old_url
        payload = {**SEED, "messageId": "AFTER-RESTORE", "zaapId": "AFTER-RESTORE"}
        response = requests.post(second.base_url + urlsplit(new_url).path, json=payload, timeout=30)
        assert response.status_code == 200, response.text
    finally:
        stop_server(second)
    after = read_database(
        new / "dashboard.sqlite3", "SELECT id FROM deliveries WHERE message_id = 'AFTER-RESTORE'"
    )
    assert after == [(response.json()["id"],)]


@pytest.mark.server
def test_restore_and_a_second_serve_are_refused_while_a_server_runs(tmp_path):
    data_dir, archive = tmp_path / "data", tmp_path / "b.tar.gz"
    server = start_server(data_dir, "--workers", "1", "--threads", "4")
    try:
        assert run("backup", str(archive), data_dir=data_dir).returncode == 0
        before = sorted(path.name for path in data_dir.iterdir())
        database = (data_dir / "dashboard.sqlite3").stat()

        refused = run("restore", "--replace", str(archive), data_dir=data_dir)
        assert_one_error_line(
            refused,
            f"another zapi-dashboard server is running on this data dir (pid {server.process.pid})",
            "stop it first",
        )
        again = run(
            "serve",
            "--port",
            str(free_port()),
            data_dir=data_dir,
            env={"DASHBOARD_WEBHOOK_TOKEN": TOKEN},
        )
        assert_one_error_line(
            again,
            f"another zapi-dashboard server is running on this data dir (pid {server.process.pid})",
        )
        assert requests.get(f"{server.base_url}/healthz", timeout=30).ok
        assert sorted(path.name for path in data_dir.iterdir()) == before
        assert (data_dir / "dashboard.sqlite3").stat().st_ino == database.st_ino
    finally:
        stop_server(server)
    # Once the server has stopped, its lock is gone with it.
    assert run("restore", "--replace", str(archive), data_dir=data_dir).returncode == 0


def test_restore_refuses_an_existing_database_and_replace_keeps_it_aside(tmp_path, monkeypatch):
    source = make_data_dir(tmp_path / "source", callbacks=3)
    target = make_data_dir(tmp_path / "target", callbacks=5)
    archive = tmp_path / "b.tar.gz"
    assert invoke(monkeypatch, source, "backup", str(archive)).exit_code == 0
    old_secret = (target / "secret_key").read_text()

    refused = invoke(monkeypatch, target, "restore", str(archive))
    assert_one_error_line(refused, f"{target} already holds a database", "--replace")
    assert read_database(target / "dashboard.sqlite3", "SELECT count(*) FROM deliveries") == [(5,)]

    replaced = invoke(monkeypatch, target, "restore", "--replace", str(archive))
    assert replaced.exit_code == 0, replaced.output
    first, kept = replaced.stdout.splitlines()
    assert (
        first == f"Restored 3 callbacks (schema {HEAD} → {HEAD}) into {target}; start the server."
    )
    suffix = kept.rsplit("<name>", 1)[1].rstrip(".")
    assert kept == (
        "The previous dashboard.sqlite3, secret_key, settings_key, webhook_token are kept "
        f"in {target} as <name>{suffix}."
    )
    assert suffix.startswith(".before-restore-") and suffix.endswith("Z")
    aside = Path(f"{target / 'dashboard.sqlite3'}{suffix}")
    assert read_database(aside, "SELECT count(*) FROM deliveries") == [(5,)]
    assert Path(f"{target / 'secret_key'}{suffix}").read_text() == old_secret
    assert read_database(target / "dashboard.sqlite3", "SELECT count(*) FROM deliveries") == [(3,)]
    assert (target / "secret_key").read_text() == (source / "secret_key").read_text()


def test_an_older_backup_is_migrated_forward(tmp_path, monkeypatch):
    source = make_data_dir(tmp_path / "source", revision="0003", callbacks=2)
    archive = tmp_path / "old.tar.gz"
    made = invoke(monkeypatch, source, "backup", str(archive))
    assert "Backup of 2 callbacks (schema 0003) written to" in made.stdout

    restored = invoke(monkeypatch, tmp_path / "new", "restore", str(archive))
    assert restored.exit_code == 0, restored.output
    assert f"Restored 2 callbacks (schema 0003 → {HEAD})" in restored.stdout
    head = migrate.head_revision()
    database = tmp_path / "new" / "dashboard.sqlite3"
    assert read_database(database, "SELECT version_num FROM alembic_version") == [(head,)]
    assert not Path(f"{database}-wal").exists()


def test_a_backup_from_a_newer_schema_is_refused(tmp_path, monkeypatch):
    source = make_data_dir(tmp_path / "source")
    connection = sqlite3.connect(source / "dashboard.sqlite3")
    with connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    connection.close()
    archive = tmp_path / "newer.tar.gz"
    assert invoke(monkeypatch, source, "backup", str(archive)).exit_code == 0

    refused = invoke(monkeypatch, tmp_path / "new", "restore", str(archive))
    assert_one_error_line(
        refused, "this backup was made by a newer zapi-dashboard (schema 0099); upgrade first"
    )
    assert not (tmp_path / "new" / "dashboard.sqlite3").exists()


def repacked(archive: Path, target: Path, change) -> Path:
    """A copy of the backup ``archive`` whose members went through ``change(name, data)``."""
    with tarfile.open(archive, "r:gz") as original, tarfile.open(target, "w:gz") as copy:
        for member in original.getmembers():
            data = change(member.name, original.extractfile(member).read())
            if data is not None:
                member.size = len(data)
                copy.addfile(member, io.BytesIO(data))
    return target


def damaged_database(name: str, data: bytes) -> bytes:
    if name != "dashboard.sqlite3":
        return data
    page = 4096  # the second page onwards holds the tables: scribble over them
    return data[:page] + bytes([0x5A]) * (len(data) - 2 * page) + data[-page:]


def newer_format(name: str, data: bytes) -> bytes:
    if name != "manifest.json":
        return data
    return json.dumps({**json.loads(data), "format_version": 2}).encode()


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda good, bad: bad, "does not exist"),
        (lambda good, bad: written(bad, b"hello"), "is not a zapi-dashboard backup"),
        (lambda good, bad: written(bad, gzip.compress(b"x" * 600)), "is not a zapi"),
        (lambda good, bad: written(bad, good.read_bytes()[:4000]), "is damaged or is not"),
        (
            lambda good, bad: repacked(good, bad, lambda n, d: None if n == "manifest.json" else d),
            "is not a zapi-dashboard backup (it holds no manifest.json)",
        ),
        (lambda good, bad: repacked(good, bad, damaged_database), "is damaged (SQLite's integrity"),
        (
            lambda good, bad: repacked(good, bad, newer_format),
            "newer zapi-dashboard (backup format 2)",
        ),
    ],
    ids=["missing", "text", "gzip-not-tar", "truncated", "no-manifest", "corrupt-db", "newer"],
)
def test_a_file_that_is_no_usable_backup_is_refused_with_one_line(
    tmp_path, monkeypatch, make, message
):
    source = make_data_dir(tmp_path / "source", callbacks=300)
    good = tmp_path / "good.tar.gz"
    assert invoke(monkeypatch, source, "backup", str(good)).exit_code == 0
    bad = make(good, tmp_path / "bad.tar.gz")

    refused = invoke(monkeypatch, tmp_path / "new", "restore", str(bad))
    assert_one_error_line(refused, str(tmp_path / "bad.tar.gz"), message)
    assert not (tmp_path / "new" / "dashboard.sqlite3").exists()
    assert [path.name for path in (tmp_path / "new").iterdir() if path.name.startswith(".")] == []


def test_a_refusal_from_the_installed_command_is_one_line_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b" + b"\0" * 100)
    assert_one_error_line(run("restore", str(bad), data_dir=tmp_path / "data"), str(bad))


def test_backup_never_overwrites_and_needs_an_existing_folder(tmp_path, monkeypatch):
    source = make_data_dir(tmp_path / "source")
    taken = tmp_path / "taken.tar.gz"
    taken.write_text("precious")
    refused = invoke(monkeypatch, source, "backup", str(taken))
    assert_one_error_line(refused, f"{taken} already exists; choose another name")
    assert taken.read_text() == "precious"
    missing = invoke(monkeypatch, source, "backup", str(tmp_path / "nowhere" / "b.tar.gz"))
    assert_one_error_line(missing, f"The folder {tmp_path / 'nowhere'} does not exist")
    empty = invoke(monkeypatch, tmp_path / "empty", "backup", str(tmp_path / "b.tar.gz"))
    assert_one_error_line(empty, "There is no database at")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty", "source", "taken.tar.gz"]


def test_a_full_disk_says_how_much_room_the_backup_needs_and_leaves_nothing(tmp_path):
    source = make_data_dir(tmp_path / "source", callbacks=2000)
    folder = tmp_path / "backups"
    folder.mkdir()

    def small_files_only():
        # Writes past 64 kB fail as on a full disk (EFBIG; Python ignores SIGXFSZ).
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = run("backup", str(folder / "b.tar.gz"), data_dir=source, preexec_fn=small_files_only)
    # SQLite calls it a disk I/O error; either way the line says where and how much.
    assert_one_error_line(result, f" in {folder} (", "): this needs about ", " free there.")
    assert list(folder.iterdir()) == []


def test_backup_on_postgres_says_to_use_pg_dump_and_writes_nothing(tmp_path, monkeypatch):
    reset_postgres()
    env = {"DASHBOARD_DATABASE_URL": POSTGRES_URL}
    result = invoke(monkeypatch, tmp_path / "data", "backup", str(tmp_path / "b.tar.gz"), env=env)
    assert_one_error_line(result, "pg_dump --format=custom --file=dashboard.dump", "secret files")
    assert not (tmp_path / "b.tar.gz").exists()
    restore = invoke(monkeypatch, tmp_path / "data", "restore", str(tmp_path / "b.tar.gz"), env=env)
    assert_one_error_line(restore, "pg_restore")


def test_restore_mentions_environment_secrets_only_when_they_are_set(tmp_path, monkeypatch):
    source = make_data_dir(tmp_path / "source", callbacks=1)
    archive = tmp_path / "b.tar.gz"
    env = {"DASHBOARD_WEBHOOK_TOKEN": TOKEN}
    made = invoke(monkeypatch, source, "backup", str(archive), env=env)
    assert made.stdout.splitlines()[1:] == [
        "DASHBOARD_WEBHOOK_TOKEN is set in the environment, not in the backup: "
        "keep it with the backup."
    ]
    restored = invoke(monkeypatch, tmp_path / "new", "restore", str(archive), env=env)
    assert restored.stdout.splitlines() == [
        f"Restored 1 callback (schema {HEAD} → {HEAD}) into {tmp_path / 'new'}; start the server.",
        "DASHBOARD_WEBHOOK_TOKEN is set in the environment and wins over the restored "
        "webhook_token.",
    ]


def test_a_restore_in_progress_holds_the_data_dir_against_a_server(tmp_path):
    from dashboard.server import lock as server_lock

    restoring = server_lock.held(tmp_path, server_lock.RESTORE)
    with restoring, pytest.raises(server_lock.Held) as refused:
        server_lock.hold_while_running(tmp_path)
    assert str(refused.value) == (
        f"a zapi-dashboard restore is running on this data dir (pid {os.getpid()})"
    )
    # Released with the block: the next holder gets it at once.
    with server_lock.held(tmp_path, server_lock.RESTORE):
        assert (tmp_path / "server.lock").read_text() == f"{os.getpid()} restore\n"
