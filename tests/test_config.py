import stat

import pytest

from dashboard import create_app
from dashboard.config import ConfigError
from dashboard.extensions import db


def make(tmp_path, **config):
    try:
        return create_app({"DATA_DIR": str(tmp_path), **config})
    finally:
        if db.engine is not None:
            db.engine.dispose()


def test_secrets_are_generated_once_with_mode_0600_and_reused(tmp_path):
    first = make(tmp_path)
    for name in ("secret_key", "webhook_token", "settings_key"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, name
    second = make(tmp_path)
    assert first.config["WEBHOOK_TOKEN"] == second.config["WEBHOOK_TOKEN"]
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert first.config["SETTINGS_KEY"] == second.config["SETTINGS_KEY"]
    assert len(first.config["WEBHOOK_TOKEN"]) >= 22


def test_environment_variables_configure_the_app(tmp_path, monkeypatch):
    token = "1234567890123456789012345"  # digits only: must stay a string
    monkeypatch.setenv("DASHBOARD_WEBHOOK_TOKEN", token)
    monkeypatch.setenv("DASHBOARD_PUBLIC_URL", "https://dash.example.com")
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path / "from-env"))
    app = create_app()
    db.engine.dispose()
    assert app.config["WEBHOOK_TOKEN"] == token
    assert app.config["PUBLIC_URL"] == "https://dash.example.com"
    assert (tmp_path / "from-env" / "dashboard.sqlite3").exists()


def test_a_short_webhook_token_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least 22"):
        make(tmp_path, WEBHOOK_TOKEN="short-token-123")


def test_a_token_that_does_not_fit_in_a_url_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="letters, digits"):
        make(tmp_path, WEBHOOK_TOKEN="a/b" * 10)


def test_a_data_dir_that_cannot_be_created_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="Cannot create the data directory"):
        make(blocker / "data")


def test_an_unusable_database_url_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="DASHBOARD_DATABASE_URL"):
        make(tmp_path, DATABASE_URL="nosuchdb://x")
    with pytest.raises(ConfigError, match="Cannot open the database"):
        make(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/missing/db.sqlite3")


def test_an_unknown_sqlite_synchronous_mode_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="NORMAL or FULL"):
        make(tmp_path, SQLITE_SYNCHRONOUS="OFF")
