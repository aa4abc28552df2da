"""Faults under load: servers killed, a full disk, PostgreSQL restarted; no 200 is ever lost.

Small counts, so the file runs in a few minutes; `python bench/faults.py --rounds 20` runs
the same faults many more times.
"""

import random

import pytest
import requests

from dashboard import create_app, disk
from dashboard.extensions import db

from .faults import (
    ENGLISH,
    Load,
    MountRefused,
    PostgresRefused,
    banner_shown,
    fill,
    health,
    integrity,
    kill_repeatedly,
    private_postgres,
    small_filesystem,
    sqlite_url,
    storage_faults,
)
from .support import (
    PASSWORD,
    POSTGRES_URL,
    SEED,
    create_user_with_cli,
    english_client,
    free_port,
    missing,
    post_json,
    reset_postgres,
    start_server,
    stop_server,
    wait_until,
)
from .ws import sign_in

pytestmark = pytest.mark.server

CLIENTS = 32
KILLS = 3
DISK_FULL_MESSAGE = "The disk is full: storing callbacks is paused until space is freed."
BANNER_WORDS = "The disk is full"


@pytest.fixture
def started():
    """Servers to stop after the test, whatever happened; tests append the ones they start."""
    servers = []
    yield servers
    for server in servers:
        stop_server(server)


@pytest.fixture
def rng():
    """A random source whose seed is printed, so a failing run can be replayed."""
    seed = random.randrange(2**32)
    print(f"random seed {seed}")
    return random.Random(seed)


@pytest.fixture
def cluster():
    """A PostgreSQL cluster of the test's own, so its restart leaves other runs alone."""
    try:
        with private_postgres() as running:
            yield running
    except PostgresRefused as refused:
        missing(str(refused))


@pytest.fixture
def volume(tmp_path):
    """A 32 MiB file system of the test's own, unmounted at the end."""
    try:
        with small_filesystem(tmp_path / "disk", "32m") as mounted:
            yield mounted
    except MountRefused as refused:
        missing(str(refused))


def assert_clean(load: Load, database_url: str) -> None:
    assert load.unexpected == [], "answers other than 200 and 503"
    assert load.stuck == [], "callbacks that never got a 200"
    assert storage_faults(load, database_url) == []


@pytest.mark.sqlite_only
def test_sqlite_survives_sigkill_of_the_whole_server(tmp_path, started, rng):
    data_dir = tmp_path / "data"
    port = free_port()

    def start(name):
        server = start_server(data_dir, "--workers", "2", port=port, name=name)
        started.append(server)
        return server

    server = start("server")
    with Load([server.webhook_url], CLIENTS) as load:
        kill_repeatedly(server, start, load, KILLS, rng)
    stop_server(started[-1])

    assert_clean(load, sqlite_url(data_dir))
    assert load.answers["ConnectionError"] > 0, "no request was cut off by a kill"
    assert integrity(data_dir) == "ok"


def test_postgres_instance_killed_while_another_serves(tmp_path, started, rng):
    reset_postgres()
    data_dir = tmp_path / "shared"
    env = {"DASHBOARD_DATABASE_URL": POSTGRES_URL}
    victim_port = free_port()

    def start(name, port=victim_port):
        server = start_server(data_dir, "--workers", "2", env=env, name=name, port=port)
        started.append(server)
        return server

    victim = start("victim")
    survivor = start("survivor", port=free_port())
    with Load([victim.webhook_url, survivor.webhook_url], CLIENTS) as load:
        kill_repeatedly(victim, start, load, KILLS, rng)

    assert_clean(load, POSTGRES_URL)
    assert load.answers["ConnectionError"] > 0, "no request was cut off by a kill"


@pytest.mark.sqlite_only
def test_a_full_disk_pauses_storing_and_freeing_it_resumes(volume, started):
    data_dir = volume / "data"
    create_user_with_cli(data_dir, "ana", PASSWORD)
    server = start_server(data_dir)
    started.append(server)
    browser = sign_in(server, "ana")
    assert not banner_shown(browser, server, BANNER_WORDS)
    filler = volume / "filler"
    with Load([server.webhook_url], 8) as load:
        load.wait_for_acks(20)
        fill(filler)

        def disk_full():
            status, answer = health(server)
            return status == 503 and answer["disk"] == "full" and answer

        answer = wait_until(disk_full, message="/healthz to say the disk is full")
        assert answer["status"] == "unavailable"
        assert answer["error"] == DISK_FULL_MESSAGE
        assert answer["diskFreeBytes"] < disk.FULL_BELOW_BYTES
        assert banner_shown(browser, server, BANNER_WORDS)
        refused = requests.post(
            server.webhook_url, json={**SEED, "messageId": "while-full"}, headers=ENGLISH
        )
        assert (refused.status_code, refused.json()) == (503, {"error": DISK_FULL_MESSAGE})
        wait_until(lambda: load.refusals[DISK_FULL_MESSAGE] >= 20, message="503s while full")

        filler.unlink()
        load.wait_for_acks(20, message="storing to resume once space is freed")
        # Free space is measured at most once a second, so the all-clear may lag that much.
        wait_until(lambda: health(server)[0] == 200, message="/healthz to clear")
        status, answer = health(server)
        assert (status, answer["status"], answer["disk"]) == (200, "ok", "ok")
        assert not banner_shown(browser, server, BANNER_WORDS)
    stop_server(server)

    assert_clean(load, sqlite_url(data_dir))
    assert integrity(data_dir) == "ok"


@pytest.mark.sqlite_only
def test_sqlite_saying_the_disk_is_full_is_enough(volume, monkeypatch):
    # Free space alone would already say "full": here only SQLite's own error can.
    monkeypatch.setattr(disk, "FULL_BELOW_BYTES", 0)
    app = create_app({"TESTING": True, "DATA_DIR": str(volume / "data")})
    client = english_client(app)
    path = f"/webhooks/{app.config['WEBHOOK_TOKEN']}"
    try:
        assert post_json(client, path, SEED).status_code == 200
        fill(volume / "filler")
        refused = post_json(client, path, {**SEED, "messageId": "refused"})
        assert (refused.status_code, refused.json) == (503, {"error": DISK_FULL_MESSAGE})
        assert client.get("/healthz").json["disk"] == "full"

        (volume / "filler").unlink()
        assert post_json(client, path, {**SEED, "messageId": "later"}).status_code == 200
        assert client.get("/healthz").json["disk"] == "ok"
    finally:
        db.engine.dispose()


def test_postgres_restarted_under_load(tmp_path, started, cluster):
    server = start_server(tmp_path / "data", env={"DASHBOARD_DATABASE_URL": cluster.url})
    started.append(server)
    with Load([server.webhook_url], 8) as load:
        load.wait_for_acks(20)
        with cluster.stopped():
            status, answer = health(server)
            assert (status, answer["status"]) == (503, "unavailable")
            refused = requests.post(server.webhook_url, json={**SEED, "messageId": "outage"})
            assert refused.status_code == 503
            wait_until(lambda: sum(load.refusals.values()) >= 8, message="503s in the outage")
        load.wait_for_acks(20, 120, "storing to recover once PostgreSQL is back")
        assert health(server)[0] == 200
    assert_clean(load, cluster.url)
