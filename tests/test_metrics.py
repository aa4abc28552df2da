"""/metrics: who may read it, and figures that add up over a real server's workers."""

import os
import re
import signal
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from dashboard import create_app, deliveries
from dashboard.extensions import db

from .support import (
    PASSWORD,
    SEED,
    create_user_with_cli,
    english_client,
    make_user,
    post_json,
    sign_in,
    start_server,
    stop_server,
    wait_until,
    wait_until_healthy,
)
from .ws import close_quietly, connect, cookie_header, post_callback, post_many
from .ws import sign_in as sign_in_over_http

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
REMOTE = {"REMOTE_ADDR": "203.0.113.5"}
CALLBACKS = "zapi_dashboard_callbacks_total"
LATENCY = "zapi_dashboard_webhook_request_duration_seconds"
BATCHES = "zapi_dashboard_writer_batch_size"
SOCKETS = "zapi_dashboard_live_sockets"


def samples(text: str) -> dict[tuple, float]:
    """Every sample of a scrape by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def callbacks(figures: dict, kind: str, outcome: str) -> float:
    """The callbacks counter of ``kind`` and ``outcome`` (0 when never counted)."""
    return figures.get((CALLBACKS, (("outcome", outcome), ("type", kind))), 0.0)


def scrape(client, **kwargs) -> dict:
    """The samples of one successful scrape through a Flask test client."""
    answer = client.get("/metrics", **kwargs)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return samples(answer.get_data(as_text=True))


# Access -------------------------------------------------------------------------------


def test_this_machine_reads_the_metrics_without_signing_in(client):
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    assert answer.headers["Cache-Control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(answer.get_data(True))}
    assert {
        "zapi_dashboard_callbacks",
        LATENCY,
        BATCHES,
        SOCKETS,
        "zapi_dashboard_database_errors",
        "zapi_dashboard_last_callback_age_seconds",
        "zapi_dashboard_disk_free_bytes",
        "zapi_dashboard_disk_full",
    } <= names


def test_the_readme_lists_every_metric(client):
    table = README.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(zapi_dashboard_[a-z_]+)", table, flags=re.MULTILINE))
    text = client.get("/metrics").get_data(as_text=True)
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(text)
    }
    assert documented == exposed


def test_an_admin_reads_them_from_anywhere(admin_client):
    answer = admin_client.get("/metrics", environ_base=REMOTE)
    assert answer.status_code == 200


def test_a_viewer_is_told_to_ask_an_admin(viewer_client):
    answer = viewer_client.get("/metrics", environ_base=REMOTE)
    assert answer.status_code == 403
    assert "Only admins" in answer.get_json()["error"]


def test_a_stranger_is_told_how_to_get_access(client):
    answer = client.get("/metrics", environ_base=REMOTE)
    assert answer.status_code == 401
    assert "Sign in as an admin" in answer.get_json()["error"]


@pytest.mark.parametrize(
    ("peer", "forwarded"),
    [
        ("203.0.113.5", "127.0.0.1"),  # a forged header, straight from outside
        ("127.0.0.1", "203.0.113.9"),  # an untrusted proxy on this machine, client outside
    ],
)
def test_forwarding_headers_without_trusted_proxies_never_make_a_request_local(
    client, peer, forwarded
):
    answer = client.get(
        "/metrics", environ_base={"REMOTE_ADDR": peer}, headers={"X-Forwarded-For": forwarded}
    )
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("forwarded", "status"),
    [
        ("203.0.113.9", 401),  # the proxy's client is elsewhere
        ("127.0.0.1, 203.0.113.9", 401),  # what the client claimed is not what the proxy saw
        ("127.0.0.1", 200),  # the proxy's client is this machine
    ],
)
def test_behind_a_trusted_proxy_its_client_decides(tmp_path, forwarded, status):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "TRUSTED_PROXIES": 1})
    try:
        answer = english_client(app).get("/metrics", headers={"X-Forwarded-For": forwarded})
        assert answer.status_code == status
    finally:
        db.engine.dispose()


def test_a_signed_in_viewer_on_this_machine_reads_them(viewer_client):
    assert viewer_client.get("/metrics").status_code == 200


def test_an_admin_signed_in_from_outside_reads_them(app):
    make_user("ana", "admin")
    remote = english_client(app)
    remote.environ_base.update(REMOTE)
    assert sign_in(remote, "ana").status_code == 302
    assert remote.get("/metrics").status_code == 200


# Figures of one process ---------------------------------------------------------------


def test_each_webhook_outcome_is_counted(client, webhook_path, monkeypatch):
    before = scrape(client)
    status = {**SEED, "type": "MessageStatusCallback", "status": "READ", "ids": ["m-1"]}
    assert post_json(client, webhook_path, SEED).status_code == 200
    assert post_json(client, webhook_path, SEED).get_json()["duplicate"] is True
    assert post_json(client, webhook_path, status).status_code == 200
    assert post_json(client, webhook_path, {**SEED, "type": "Invented"}).status_code == 200
    assert client.post(webhook_path, data="{", content_type="application/json").status_code == 400
    assert client.post(webhook_path, data="{}", content_type="text/plain").status_code == 415
    assert post_json(client, "/webhooks/not-the-token", SEED).status_code == 404

    def unavailable(session, batch):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(deliveries, "record", unavailable)
    assert post_json(client, webhook_path, {**SEED, "messageId": "x"}).status_code == 503

    after = scrape(client)
    for kind, outcome in [
        ("DeliveryCallback", "stored"),
        ("DeliveryCallback", "duplicate"),
        ("MessageStatusCallback", "stored"),
        ("other", "stored"),
        ("other", "rejected_400"),
        ("other", "rejected_415"),
        ("other", "rejected_404"),
        ("DeliveryCallback", "unavailable"),
    ]:
        assert callbacks(after, kind, outcome) - callbacks(before, kind, outcome) == 1, outcome
    writer_errors = ("zapi_dashboard_database_errors_total", (("component", "writer"),))
    assert after[writer_errors] - before.get(writer_errors, 0) == 1
    count = (f"{LATENCY}_count", ())
    assert after[count] - before[count] == 8
    batched = (f"{BATCHES}_sum", ())
    assert after[batched] - before[batched] == 5  # the refused ones never reach the writer


def test_no_label_carries_a_phone_or_a_token(client, webhook_path):
    post_json(client, webhook_path, SEED)
    text = client.get("/metrics").get_data(as_text=True)
    assert SEED["phone"] not in text
    assert webhook_path.rsplit("/", 1)[1] not in text


def test_the_last_callback_age_and_the_disk_are_read_when_scraped(client, webhook_path):
    age = ("zapi_dashboard_last_callback_age_seconds", ())
    assert age not in scrape(client)  # nothing stored yet
    post_json(client, webhook_path, SEED)
    figures = scrape(client)
    assert 0 <= figures[age] < 60
    assert figures[("zapi_dashboard_disk_full", ())] == 0
    free = ("zapi_dashboard_disk_free_bytes", ())
    # On PostgreSQL the disk is the database server's: this machine cannot tell.
    assert (figures[free] > 0) if db.is_sqlite else (free not in figures)


def test_a_database_that_does_not_answer_leaves_the_other_figures(client, monkeypatch):
    def gone(session):
        raise OperationalError("SELECT", {}, Exception("unable to open database file"))

    monkeypatch.setattr(deliveries, "last_received_at", gone)
    figures = scrape(client)
    assert figures[("zapi_dashboard_database_errors_total", (("component", "metrics"),))] >= 1
    assert ("zapi_dashboard_last_callback_age_seconds", ()) not in figures


# A real server ------------------------------------------------------------------------


def metrics_dirs(temp: Path) -> list[Path]:
    """The folders where a server started with TMPDIR=temp keeps its workers' figures."""
    return sorted(temp.glob("zapi-dashboard-metrics-*"))


def counting_processes(temp: Path) -> set[str]:
    """The pids whose counters are in the server's figures folder."""
    (folder,) = metrics_dirs(temp)
    return {path.stem.rsplit("_", 1)[1] for path in folder.glob("counter_*.db")}


def scrape_server(server) -> dict:
    """One scrape of a real server, from this machine."""
    answer = requests.get(f"{server.base_url}/metrics", timeout=60)
    assert answer.status_code == 200, answer.text
    return samples(answer.text)


def worker_pids(server) -> list[int]:
    """The gunicorn workers of ``server`` (the children of its master)."""
    pid = server.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.server
def test_figures_add_up_over_workers_and_start_afresh(tmp_path):
    data_dir, temp = tmp_path / "data", tmp_path / "tmp"
    temp.mkdir()
    create_user_with_cli(data_dir, "ana", PASSWORD)
    options = ("--workers", "2", "--threads", "4")
    server = start_server(data_dir, *options, env={"TMPDIR": str(temp)})
    try:
        (folder,) = metrics_dirs(temp)
        assert folder.stat().st_mode & 0o777 == 0o700
        # Fresh connections from several threads, until both workers have counted some.
        posted = []

        def both_workers_counted():
            posted.extend(post_many([server], 20, threads=4))
            return len(counting_processes(temp)) == 2

        wait_until(both_workers_counted, message="callbacks handled by both workers")
        first = requests.post(server.webhook_url, json={**SEED, "messageId": "dup"}, timeout=60)
        again = requests.post(server.webhook_url, json={**SEED, "messageId": "dup"}, timeout=60)
        assert again.json()["duplicate"] is True, (first.text, again.text)
        refused = requests.post(
            server.webhook_url, data="{", headers={"Content-Type": "application/json"}, timeout=60
        )
        assert refused.status_code == 400

        figures = scrape_server(server)
        stored = len(posted) + 1
        assert callbacks(figures, "DeliveryCallback", "stored") == stored
        assert callbacks(figures, "DeliveryCallback", "duplicate") == 1
        assert callbacks(figures, "other", "rejected_400") == 1
        assert figures[(f"{LATENCY}_count", ())] == stored + 2
        assert figures[(f"{BATCHES}_sum", ())] == stored + 1
        assert 1 <= figures[(f"{BATCHES}_count", ())] <= stored + 1
        assert figures[("zapi_dashboard_last_callback_age_seconds", ())] >= 0

        cookie = cookie_header(sign_in_over_http(server, "ana"))
        ws = connect(server, cookie)
        try:
            wait_until(lambda: scrape_server(server)[(SOCKETS, ())] == 1, message="one socket")
            # A worker that dies takes its sockets along; its counts stay.
            for pid in worker_pids(server):
                os.kill(pid, signal.SIGKILL)
            wait_until_healthy(server)
            wait_until(lambda: scrape_server(server)[(SOCKETS, ())] == 0, message="no socket")
        finally:
            close_quietly(ws)
        assert callbacks(scrape_server(server), "DeliveryCallback", "stored") == stored
    finally:
        stop_server(server)
    assert metrics_dirs(temp) == []

    server = start_server(data_dir, *options, env={"TMPDIR": str(temp)})
    try:
        assert metrics_dirs(temp) != [folder]
        post_callback(server)
        figures = scrape_server(server)
        assert callbacks(figures, "DeliveryCallback", "stored") == 1
        assert callbacks(figures, "DeliveryCallback", "duplicate") == 0
        assert figures[(f"{LATENCY}_count", ())] == 1
    finally:
        stop_server(server)
