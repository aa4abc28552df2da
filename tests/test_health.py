from dashboard import migrate
from dashboard.extensions import db

from .support import SEED, on_postgres, post_json


def test_health_reports_schema_and_no_callback_yet(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    answer = response.json
    assert answer == {
        "status": "ok",
        "schemaVersion": migrate.head_revision(),
        "lastCallbackAgeSeconds": None,
        "disk": "ok",
        "diskFreeBytes": answer["diskFreeBytes"],
    }
    # On PostgreSQL the disk is the database server's: this machine cannot tell.
    assert answer["diskFreeBytes"] is None if on_postgres() else answer["diskFreeBytes"] > 0


def test_health_reports_the_age_of_the_last_callback(client, webhook_path):
    post_json(client, webhook_path, SEED)
    age = client.get("/healthz").json["lastCallbackAgeSeconds"]
    assert 0 <= age < 60


def test_health_is_503_when_the_database_does_not_answer(app, client, tmp_path):
    db.init(f"sqlite:///{tmp_path}/missing-dir/nothing.sqlite3")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"


def test_health_reveals_no_secret(app, client):
    text = client.get("/healthz").get_data(as_text=True)
    assert app.config["WEBHOOK_TOKEN"] not in text
    assert app.config["SECRET_KEY"] not in text
