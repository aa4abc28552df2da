"""No secret in clear from a Z-API answer that echoes it: not stored, shown or logged."""

import base64
import logging
import subprocess
from urllib.parse import quote

import pytest
from sqlalchemy import select

from dashboard import create_app
from dashboard.extensions import db
from dashboard.models import SettingsChange

from .support import (
    child_env,
    cli_command,
    database_bytes,
    secret_forms,
)
from .test_settings import CLIENT_TOKEN, INSTANCE_TOKEN, PATH, PUBLIC_URL, UPDATES, submit

# A session key with the characters that JSON and URL encoding change.
SECRET_KEY = 'sk/with+odd"chars\\and=more_0123456789'

pytestmark = pytest.mark.sqlite_only  # the database files are read as bytes


@pytest.fixture
def app(tmp_path):
    """An app whose secret key has characters each encoding changes."""
    settings = {"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": SECRET_KEY}
    application = create_app(settings)
    yield application
    db.engine.dispose()


def secrets_of(app) -> list[str]:
    return [app.config["WEBHOOK_TOKEN"], INSTANCE_TOKEN, CLIENT_TOKEN, SECRET_KEY]


def echoes(app) -> dict[str, str]:
    """Z-API's error text holding our secrets, in each way an answer has been seen to."""
    token = app.config["WEBHOOK_TOKEN"]
    url = f"{PUBLIC_URL}/webhooks/{token}"
    return {
        "json-escaped": "Invalid value " + url.replace("/", "\\/"),
        "url-encoded": "value=" + quote(url, safe=""),
        "url-encoded-lower": "value=" + quote(url, safe="").replace("%2F", "%2f").lower(),
        "bare-token": f"token {token} is not a valid webhook",
        "base64": "value " + base64.b64encode(url.encode()).decode(),
        "client-token-escaped": f"Client-Token {quote(CLIENT_TOKEN)} from {quote(PATH, safe='')}",
        "secret-key": f"key {SECRET_KEY} / {quote(SECRET_KEY, safe='')}",
    }


KINDS = (
    "json-escaped",
    "url-encoded",
    "url-encoded-lower",
    "bare-token",
    "base64",
    "client-token-escaped",
    "secret-key",
)


def assert_nowhere(app, texts: list[str]):
    """No form of any secret in ``texts`` nor in the database file and its WAL."""
    stored = database_bytes(app.config["DATA_DIR"])
    assert stored
    for secret in secrets_of(app):
        for form in secret_forms(secret):
            assert form.encode() not in stored, form
            assert all(form not in text for text in texts), form


@pytest.mark.parametrize("kind", KINDS)
def test_an_echoed_secret_is_not_stored_shown_or_logged(app, zapi_admin, httpserver, caplog, kind):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request(UPDATES).respond_with_data(
        echoes(app)[kind], status=400, content_type="text/plain"
    )
    answers = [submit(zapi_admin), zapi_admin.get("/settings")]
    served = [answer.get_data(as_text=True) for answer in answers]
    outcome = db_outcomes()[-1]
    assert "Z-API said" in outcome
    assert "<secret>" in outcome or "<token>" in outcome
    assert "&lt;secret&gt;" in served[-1] or "&lt;token&gt;" in served[-1]
    # "werkzeug" records here are the fake Z-API server's own request log, not ours.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")
    assert_nowhere(app, [*served, logged, *db_outcomes()])


def db_outcomes() -> list[str]:
    with db.reading() as session:
        return list(session.scalars(select(SettingsChange.outcome).order_by(SettingsChange.id)))


def test_lines_stored_before_scrubbing_are_scrubbed_at_the_next_start(app, zapi_admin, httpserver):
    httpserver.expect_request(UPDATES).respond_with_json({"value": True})
    submit(zapi_admin)  # stores the sealed tokens, as an installation that used the settings has
    leaked = " ".join(echoes(app).values())
    with db.writing() as session:  # as an older version stored Z-API's text
        session.add(SettingsChange(username="ana", action="apply", succeeded=False, outcome=leaked))
    token = app.config["WEBHOOK_TOKEN"].encode()
    assert token in database_bytes(app.config["DATA_DIR"])  # the test can fail

    db.engine.dispose()
    # A process of its own, as after an upgrade: it knows only the secrets of now.
    upgrade = subprocess.run(
        cli_command("db", "upgrade"),
        env=child_env(app.config["DATA_DIR"], DASHBOARD_SECRET_KEY=SECRET_KEY),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    db.init(app.config["DATABASE_URL"])
    shown = zapi_admin.get("/settings").get_data(as_text=True)
    assert "Invalid value" in shown
    assert_nowhere(app, [shown, upgrade.stdout, upgrade.stderr, *db_outcomes()])
