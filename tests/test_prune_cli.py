"""`zapi-dashboard prune`, run for real in a subprocess on a prepared data dir."""

import os
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from dashboard import leases, rejections, retention
from dashboard.extensions import db
from dashboard.models import Delivery, Message, PhoneLid, RejectedRequest, utcnow

from .support import POSTGRES_URL, SEED, cli_command, store_all


def seed(ages: list[int]) -> list[int]:
    """One callback per entry of ``ages``, received that many days ago; their ids."""
    ids = [row.id for row in store_all([{**SEED, "messageId": f"M{n}"} for n in range(len(ages))])]
    with db.writing() as session:
        for row_id, days in zip(ids, ages, strict=True):
            session.execute(
                update(Delivery)
                .where(Delivery.id == row_id)
                .values(received_at=utcnow() - timedelta(days=days))
            )
    return ids


# A customer's message naming them by number and by LID: one pair of the phone-to-LID map.
LID_PAIR = {
    "type": "ReceivedCallback",
    "instanceId": "instance.id",
    "messageId": "C1",
    "phone": "5544999999999",
    "senderLid": "81896604192873@lid",
    "fromMe": False,
}


def refuse(days: list[int]) -> None:
    """One refused webhook request per entry of ``days``, received that many days ago."""
    with db.writing() as session:
        for age in days:
            rejections.record(session, 400, "No type.", "application/json", b"{}", keep=65536)
            session.flush()
            session.execute(
                update(RejectedRequest)
                .where(RejectedRequest.id == select(func.max(RejectedRequest.id)).scalar_subquery())
                .values(received_at=utcnow() - timedelta(days=age))
            )


def refused_ages() -> list[int]:
    """How many days ago each kept refused request arrived, oldest first."""
    with db.reading() as session:
        times = session.scalars(select(RejectedRequest.received_at).order_by(RejectedRequest.id))
        return [(utcnow() - at).days for at in times]


def message_ids() -> list[str]:
    with db.reading() as session:
        return list(session.scalars(select(Message.message_id).order_by(Message.message_id)))


def stored_ids() -> list[int]:
    with db.reading() as session:
        return list(session.scalars(select(Delivery.id).order_by(Delivery.id)))


def prune(app, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run `zapi-dashboard prune ARGS` on ``app``'s data dir and database."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    return subprocess.run(
        cli_command("prune", *args),
        env={
            **inherited,
            "DASHBOARD_DATA_DIR": app.config["DATA_DIR"],
            "DASHBOARD_DATABASE_URL": app.config["DATABASE_URL"],
            **{f"DASHBOARD_{name}": value for name, value in env.items()},
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_prune_deletes_callbacks_older_than_the_configured_days(any_db_app):
    ids = seed([200, 95, 89, 1])
    result = prune(any_db_app)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Deleted 2 callbacks received before ")
    assert result.stdout.endswith(
        ", 2 messages left without callbacks, 0 phone-to-LID pairs not seen since and"
        " 0 refused webhook requests received before then.\n"
    )
    assert stored_ids() == ids[2:]
    assert message_ids() == ["M2", "M3"]
    with db.reading() as session:
        assert leases.get(session, retention.LEASE_NAME).last_finished_at is not None


def test_days_override_the_configuration(app):
    ids = seed([40, 20, 1])
    result = prune(app, "--days", "30", RETENTION_DAYS="365")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Deleted 1 callback received before ")
    assert stored_ids() == ids[1:]


def test_a_dry_run_counts_and_deletes_nothing(app):
    ids = seed([200, 95, 1])
    store_all([LID_PAIR])
    refuse(days=[120, 2])
    with db.writing() as session:
        session.execute(update(PhoneLid).values(seen_at=utcnow() - timedelta(days=91)))
    result = prune(app, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 callbacks received before ")
    assert result.stdout.endswith(
        ", 2 messages left without callbacks, 1 phone-to-LID pair not seen since and"
        " 1 refused webhook request received before then would be deleted (dry run).\n"
    )
    assert stored_ids()[:3] == ids
    assert message_ids() == ["M0", "M1", "M2"]
    assert refused_ages() == [120, 2]
    # What it counted is what the prune then deletes.
    done = prune(app)
    assert done.stdout.startswith("Deleted 2 callbacks received before ")
    assert done.stdout.endswith(
        ", 2 messages left without callbacks, 1 phone-to-LID pair not seen since and"
        " 1 refused webhook request received before then.\n"
    )
    assert refused_ages() == [2]


def test_zero_days_means_retention_is_off(app):
    ids = seed([2000])
    result = prune(app, RETENTION_DAYS="0")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Retention is off (DASHBOARD_RETENTION_DAYS=0); nothing to prune.\n"
    assert stored_ids() == ids


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"RETENTION_DAYS": "-1"}, "DASHBOARD_RETENTION_DAYS must be a whole number"),
        ((), {"RETENTION_DAYS": "ninety"}, "DASHBOARD_RETENTION_DAYS must be a whole number"),
        ((), {"RETENTION_DAYS": "1.5"}, "DASHBOARD_RETENTION_DAYS must be a whole number"),
        (("--days", "0"), {}, "'--days'"),
        (("--days", "x"), {}, "'--days'"),
        (("--days", "99999999"), {}, "'--days'"),
        ((), {"RETENTION_DAYS": "99999999999"}, "DASHBOARD_RETENTION_DAYS must be a whole number"),
    ],
)
def test_bad_days_get_one_clear_line(app, args, env, message):
    ids = seed([200])
    result = prune(app, *args, **env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert stored_ids() == ids


def test_another_process_holding_the_lease_is_reported(app):
    ids = seed([200])
    with db.writing() as session:
        leases.acquire(session, retention.LEASE_NAME, "host:42:cafe", utcnow(), timedelta(hours=1))
    result = prune(app)
    assert result.returncode == 1
    assert result.stderr == (
        "Error: Another process (host:42:cafe) is pruning right now; try again in a few minutes.\n"
    )
    assert stored_ids() == ids


def test_an_unreachable_database_is_one_line(app):
    result = prune(app, DATABASE_URL=POSTGRES_URL.replace(":5432", ":1"))
    assert result.returncode != 0
    assert result.stderr.startswith("Error: Cannot open the database")
    assert len(result.stderr.strip().splitlines()) == 1
