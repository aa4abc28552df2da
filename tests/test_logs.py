import logging
from urllib.parse import quote

import pytest

from dashboard import create_app
from dashboard.logs import REDACTED, keep_secret, protect, scrub

from .support import secret_forms

# A secret with the characters each encoding changes.
SECRET = 'k3y/with+odd"chars\\and=more_Z9'


def test_redact_hides_the_token_in_paths_and_request_lines():
    line = '"POST /webhooks/abcDEF123_-xyz?x=1 HTTP/1.1" 200'
    assert scrub(line) == '"POST /webhooks/<token>?x=1 HTTP/1.1" 200'
    assert scrub("no token here") == "no token here"


@pytest.mark.parametrize(
    "echo",
    [
        "https:\\/\\/host\\/webhooks\\/abcDEF123_-xyz\\/x",
        "https%3A%2F%2Fhost%2Fwebhooks%2FabcDEF123_-xyz%2Fx",
        "https%3a%2f%2fhost%2fwebhooks%2fabcDEF123_-xyz",
    ],
)
def test_escaped_webhook_paths_are_redacted_too(echo):
    assert "abcDEF123" not in scrub(echo)
    assert "<token>" in scrub(echo)


@pytest.mark.parametrize("form", secret_forms(SECRET))
def test_a_known_secret_is_scrubbed_in_every_encoding(form):
    keep_secret(SECRET)
    scrubbed = scrub(f"Z-API said: value {form} is invalid")
    assert all(each not in scrubbed for each in secret_forms(SECRET)), scrubbed
    assert scrubbed.startswith("Z-API said: value ")


def test_secrets_given_for_one_call_and_api_tokens_are_scrubbed():
    assert scrub("Client-Token ABCDEFGH12345678 not allowed", "ABCDEFGH12345678") == (
        "Client-Token <secret> not allowed"
    )
    assert "zd_" not in scrub("Bearer zd_" + "x" * 43)
    assert scrub("short", "abc") == "short"  # too short to be one of our secrets


def test_a_traceback_is_scrubbed_before_any_handler_formats_it(caplog):
    keep_secret(SECRET)
    logger = logging.getLogger("test.redaction.exc")
    protect(logger)
    try:
        raise RuntimeError(f"failed with {quote(SECRET, safe='')}")
    except RuntimeError:
        logger.exception("boom")
    assert caplog.records and "RuntimeError" in caplog.text
    assert all(form not in caplog.text for form in secret_forms(SECRET))


def test_protected_logger_never_emits_the_token(caplog):
    logger = logging.getLogger("test.redaction")
    protect(logger)
    protect(logger)  # idempotent
    assert len(logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("request %s done", "/webhooks/SECRET-TOKEN-VALUE-123456")
    assert "SECRET-TOKEN" not in caplog.text
    assert "/webhooks/<token>" in caplog.text


def test_werkzeug_request_log_is_redacted(app, webhook_path, caplog):
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        logging.getLogger("werkzeug").info('"POST %s HTTP/1.1" 200 -', webhook_path)
    assert app.config["WEBHOOK_TOKEN"] not in caplog.text


@pytest.mark.sqlite_only
def test_database_reason_keeps_the_values_out(app):
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from dashboard.extensions import db
    from dashboard.logs import database_reason

    with pytest.raises(SQLAlchemyError) as caught, db.reading() as session:
        session.execute(text("SELECT * FROM no_such_table WHERE phone = :p"), {"p": "5544999"})
    assert "5544999" in str(caught.value)
    assert database_reason(caught.value) == "no such table: no_such_table"


def test_a_new_app_scrubs_its_own_secrets_in_place_of_the_last_apps(tmp_path):
    # One app per server process; a process making many must not scrub every line
    # against the secrets of all of them, each app slower than the last.
    apps = [create_app({"TESTING": True, "DATA_DIR": str(tmp_path / f"d{n}")}) for n in range(3)]
    newest = apps[-1].config["WEBHOOK_TOKEN"]
    assert scrub(f"token {newest}") == f"token {REDACTED}"
    assert apps[0].config["WEBHOOK_TOKEN"] in scrub(f"token {apps[0].config['WEBHOOK_TOKEN']}")
