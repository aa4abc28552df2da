import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import Delivery, RejectedRequest

from .support import FAILED, SEED, post_json


def count(model):
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_seed_payload_is_stored_and_acknowledged(client, webhook_path):
    response = post_json(client, webhook_path, SEED)
    assert response.status_code == 200
    assert response.json == {"id": 1, "duplicate": False}
    with db.reading() as session:
        assert json.loads(session.get(Delivery, 1).raw) == SEED


def test_a_repeat_answers_the_same_id_as_duplicate(client, webhook_path):
    first = post_json(client, webhook_path, SEED).json
    spaced = json.dumps(dict(reversed(list(SEED.items()))), indent=2)
    again = client.post(webhook_path, data=spaced, content_type="application/json").json
    assert again == {"id": first["id"], "duplicate": True}
    assert count(Delivery) == 1


def test_failed_send_keeps_its_error(client, webhook_path):
    response = post_json(client, webhook_path, FAILED)
    with db.reading() as session:
        assert session.get(Delivery, response.json["id"]).error == FAILED["error"]


def test_json_with_charset_and_vendor_types_is_accepted(client, webhook_path):
    for content_type in ("application/json; charset=utf-8", "application/vnd.zapi+json"):
        payload = {**SEED, "messageId": content_type}
        response = client.post(webhook_path, data=json.dumps(payload), content_type=content_type)
        assert response.status_code == 200


def test_wrong_or_missing_token_is_404_and_stores_nothing(client, webhook_path):
    for path in (webhook_path + "x", webhook_path[:-1], "/webhooks/", "/webhooks"):
        response = post_json(client, path, SEED)
        assert response.status_code == 404
        assert response.is_json
        assert "error" in response.json
    assert count(Delivery) == 0
    assert count(RejectedRequest) == 0


def test_non_json_content_type_is_415(client, webhook_path):
    response = client.post(webhook_path, data=json.dumps(SEED), content_type="text/plain")
    assert response.status_code == 415
    assert "application/json" in response.json["error"]
    missing = client.post(webhook_path, data=json.dumps(SEED))
    assert missing.status_code == 415
    assert count(Delivery) == 0


def test_invalid_json_non_object_and_missing_type_are_400(client, webhook_path):
    cases = {
        "{not json": "not valid JSON",
        "[1, 2]": "must be a JSON object",
        '{"phone": "554499999999"}': '"type"',
    }
    for raw, message in cases.items():
        response = client.post(webhook_path, data=raw, content_type="application/json")
        assert response.status_code == 400
        assert message in response.json["error"]
    assert count(Delivery) == 0


def test_rejected_requests_are_logged_for_admins(client, webhook_path):
    client.post(webhook_path, data="{not json", content_type="application/json")
    with db.reading() as session:
        rejected = session.scalars(select(RejectedRequest)).one()
    assert rejected.status_code == 400
    assert rejected.body == b"{not json"
    assert rejected.content_type == "application/json"
    assert "not valid JSON" in rejected.reason


def test_body_over_64_kib_is_413_and_logged_without_its_bytes(client, webhook_path):
    # Refused by its Content-Length, before any of it is read: there are no bytes to keep.
    big = json.dumps({**SEED, "pad": "x" * (64 * 1024)})
    response = client.post(webhook_path, data=big, content_type="application/json")
    assert response.status_code == 413
    assert "64 KiB" in response.json["error"]
    with db.reading() as session:
        assert session.scalars(select(RejectedRequest.body)).one() == b""
    assert count(Delivery) == 0


def test_body_of_exactly_64_kib_is_accepted(client, webhook_path):
    payload = {**SEED, "pad": ""}
    padding = 64 * 1024 - len(json.dumps(payload))
    raw = json.dumps({**SEED, "pad": "x" * padding})
    assert len(raw) == 64 * 1024
    assert client.post(webhook_path, data=raw, content_type="application/json").status_code == 200


def test_declared_oversize_length_is_refused_without_reading_the_body(client, webhook_path):
    class Endless:
        """A body stream that fails the test if it is read past the limit."""

        def __init__(self):
            self.served = 0

        def read(self, size=-1):
            assert size != -1 and size <= 64 * 1024 + 1, "the whole body was read"
            self.served += size
            return b"x" * size

    stream = Endless()
    response = client.post(
        webhook_path,
        headers={"Content-Type": "application/json", "Content-Length": str(10**9)},
        environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": str(10**9)},
    )
    assert response.status_code == 413
    assert stream.served <= 64 * 1024 + 1


def test_other_methods_are_405_with_allow_header(client, webhook_path):
    for method in ("get", "put", "delete", "patch", "options"):
        response = getattr(client, method)(webhook_path)
        assert response.status_code == 405
        assert response.headers["Allow"] == "POST"
        assert "POST" in response.json["error"]


@pytest.mark.sqlite_only
def test_database_that_cannot_be_written_answers_503(app, client, webhook_path):
    app.config["WRITE_TIMEOUT_SECONDS"] = 0.5
    database = Path(app.config["DATA_DIR"]) / "dashboard.sqlite3"
    blocker = sqlite3.connect(database, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = post_json(client, webhook_path, SEED)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert "retry" in response.json["error"]


def test_storage_failure_answers_503_not_500(client, webhook_path):
    with db.writing() as session:
        session.connection().exec_driver_sql("DROP TABLE status_message_ids")
        session.connection().exec_driver_sql("DROP TABLE deliveries")
    response = post_json(client, webhook_path, SEED)
    assert response.status_code == 503
    assert response.is_json


def test_the_webhook_never_sets_a_session_cookie(admin_client, webhook_path):
    # Even from a browser that is signed in, a webhook call is not a page visit.
    response = post_json(admin_client, webhook_path, SEED)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
