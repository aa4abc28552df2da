"""Refused webhook requests: kept for an admin with their secrets replaced, and pruned."""

import base64
from datetime import timedelta

from sqlalchemy import select, update

from dashboard import rejections, retention
from dashboard.extensions import db
from dashboard.logs import REDACTED
from dashboard.models import RejectedRequest, utcnow

from .support import secret_forms

LIMIT = 65536


def kept() -> list[RejectedRequest]:
    with db.reading() as session:
        return list(session.scalars(select(RejectedRequest).order_by(RejectedRequest.id)))


def test_a_refusal_is_kept_with_its_body(app):
    with db.writing() as session:
        rejections.record(session, 400, "bad", "application/json", b"{oops", keep=LIMIT)
    (rejected,) = kept()
    assert (rejected.status_code, rejected.reason, rejected.body) == (400, "bad", b"{oops")
    assert rejected.content_type == "application/json"


def test_the_apps_secrets_are_replaced_in_every_encoding_and_other_bytes_kept(app):
    token = app.config["WEBHOOK_TOKEN"]
    forms = [*secret_forms(app.config["SECRET_KEY"]), token]
    body = b"\xff\xfe not UTF-8 | " + " | ".join(forms).encode() + " | café".encode()
    with db.writing() as session:
        rejections.record(session, 400, f"echo {token}", f"text/{token}", body, keep=LIMIT)
    (rejected,) = kept()
    for form in forms:
        assert form.encode() not in rejected.body
    assert rejected.body.startswith(b"\xff\xfe not UTF-8 | ")
    assert rejected.body.endswith(" | café".encode())
    assert rejected.body.count(REDACTED.encode()) == len(forms)
    assert token not in rejected.reason and token not in rejected.content_type


def test_a_secret_across_the_cut_leaves_no_start_of_it_behind(app):
    token = app.config["WEBHOOK_TOKEN"]
    body = b"x" * (LIMIT - 10) + token.encode()
    with db.writing() as session:
        rejections.record(session, 413, "too large", "application/json", body, keep=LIMIT)
    (rejected,) = kept()
    assert rejected.body == b"x" * (LIMIT - 10) + REDACTED.encode()
    assert token[:6].encode() not in rejected.body


def test_a_refused_body_posted_with_the_token_inside_is_kept_without_it(client, webhook_path):
    token = webhook_path.rsplit("/", 1)[1]
    body = f'{{"oops": "{token}", "b64": "{base64.b64encode(token.encode()).decode()}"'
    response = client.post(webhook_path, data=body, content_type="application/json")
    assert response.status_code == 400
    (rejected,) = kept()
    assert rejected.body.startswith(b'{"oops": "<secret>", "b64": "')
    assert token.encode() not in rejected.body
    assert base64.b64encode(token.encode())[4:-4] not in rejected.body


def refused(days: list[int]) -> None:
    with db.writing() as session:
        for _ in days:
            rejections.record(session, 415, "not JSON", "text/plain", b"hi", keep=LIMIT)
    with db.writing() as session:
        ids = session.scalars(select(RejectedRequest.id).order_by(RejectedRequest.id)).all()
        for row_id, age in zip(ids, days, strict=True):
            session.execute(
                update(RejectedRequest)
                .where(RejectedRequest.id == row_id)
                .values(received_at=utcnow() - timedelta(days=age))
            )


def test_retention_forgets_refusals_older_than_the_period_past_a_full_batch(any_db_app):
    refused([40, 35, 31, 31, 31, 29, 1])
    dry = retention.prune(db, days=30, dry_run=True)
    result = retention.prune(db, days=30, batch_size=2)
    assert dry.rejected == result.rejected == 5
    assert (result.deleted, result.finished) == (0, True)
    assert [(utcnow() - row.received_at).days for row in kept()] == [29, 1]
    assert retention.prune(db, days=30).rejected == 0
