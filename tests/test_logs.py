import logging

from dashboard.logs import protect, redact


def test_redact_hides_the_token_in_paths_and_request_lines():
    line = '"POST /webhooks/abcDEF123_-xyz?x=1 HTTP/1.1" 200'
    assert redact(line) == '"POST /webhooks/<token>?x=1 HTTP/1.1" 200'
    assert redact("no token here") == "no token here"


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
