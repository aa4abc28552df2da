import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dashboard import config, create_app
from dashboard.cli import main
from dashboard.config import ConfigError
from dashboard.extensions import db

from .support import cli_command, free_port


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


@pytest.mark.sqlite_only
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


def test_a_data_dir_that_cannot_be_created_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="Cannot create the data directory"):
        make(blocker / "data")


def test_a_database_that_cannot_be_opened_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="Cannot open the database"):
        make(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/missing/db.sqlite3")


EMPTY, HUGE = "", "99999999999"
# Every setting an operator can make, with values of each wrong kind that fits it.
BAD_VALUES = {
    "DATA_DIR": [EMPTY, "data", "~/data"],
    "DATABASE_URL": [EMPTY, "nosuchdb://x", "sqlite:///relative.sqlite3", "mysql://h/db", "::"],
    "SECRET_KEY": [EMPTY, "short", "a key with spaces in it"],
    "WEBHOOK_TOKEN": [EMPTY, "short-token-123", "a/b" * 10, "x" * 5000],
    "PUBLIC_URL": [
        EMPTY,
        "dashboard.example.com",
        "http://dashboard.example.com",
        "https://",
        "https://user:pw@dashboard.example.com",
        "https://dashboard.example.com/some/path",
        "https://dashboard.example.com?x=1",
        "https://dashboard.example.com:99999",
        'https://x"><svg onload=alert(1)>',
    ],
    "ZAPI_BASE_URL": [EMPTY, "api.z-api.io", "ftp://api.z-api.io", "https://api.z-api.io#x"],
    "ZAPI_TIMEOUT_SECONDS": [EMPTY, "abc", "-1", "0", HUGE, "1e999", "nan", "true"],
    "WRITE_TIMEOUT_SECONDS": [EMPTY, "abc", "-1", "0", HUGE, "inf"],
    "SQLITE_SYNCHRONOUS": [EMPTY, "OFF", "1"],
    "TRUSTED_PROXIES": [EMPTY, "yes", "-1", HUGE, "1.5", "true"],
    "SOCKETS_PER_WORKER": [EMPTY, "abc", "-1", "0", HUGE, "8.5"],
    "RETENTION_DAYS": [EMPTY, "ninety", "-1", HUGE, "2.5", "true"],
    "PRUNE_CHECK_SECONDS": [EMPTY, "soon", "-5", "0", HUGE, "inf"],
    "REQUEST_SECONDS": [EMPTY, "slow", "-1", "0", HUGE, "nan", "301"],
}
CASES = [(name, value) for name, values in BAD_VALUES.items() for value in values]
SECRETS = ("SECRET_KEY", "WEBHOOK_TOKEN")


def test_every_setting_has_bad_values_in_the_table():
    assert set(BAD_VALUES) == set(config.SETTINGS)


@pytest.mark.parametrize(("name", "value"), CASES, ids=[f"{n}={v[:20]!r}" for n, v in CASES])
def test_a_bad_value_stops_the_start_with_one_line_naming_the_variable(
    tmp_path, monkeypatch, name, value
):
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(f"DASHBOARD_{name}", value)
    result = CliRunner().invoke(main, ["webhook-url"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a clean exit, no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: DASHBOARD_{name} must be "), lines[0]
    assert lines[0].endswith("."), lines[0]
    if name in SECRETS and value:
        assert value not in result.output  # a refused secret is not echoed either


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATA_DIR", "/srv/dash/", "/srv/dash"),
        ("PUBLIC_URL", "https://dash.example.com/", "https://dash.example.com"),
        ("PUBLIC_URL", "https://dash.example.com:8443", "https://dash.example.com:8443"),
        ("ZAPI_BASE_URL", "http://127.0.0.1:9999/", "http://127.0.0.1:9999"),
        ("ZAPI_TIMEOUT_SECONDS", "2.5", 2.5),
        ("WRITE_TIMEOUT_SECONDS", "300", 300.0),
        ("SQLITE_SYNCHRONOUS", "full", "FULL"),
        ("TRUSTED_PROXIES", "0", 0),
        ("TRUSTED_PROXIES", " 2 ", 2),
        ("SOCKETS_PER_WORKER", "500", 500),
        ("RETENTION_DAYS", "0", 0),
        ("RETENTION_DAYS", "36500", 36500),
        ("PRUNE_CHECK_SECONDS", "0.5", 0.5),
        ("SECRET_KEY", "s" * 16, "s" * 16),
        ("DATABASE_URL", "postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_good_values_are_read_into_their_types(name, value, expected):
    assert config.SETTINGS[name](value) == expected


def test_a_misspelt_variable_is_named_with_its_likely_meaning(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DASHBOARD_PUBLIC_URI", "https://dash.example.com")
    result = CliRunner().invoke(main, ["webhook-url"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: DASHBOARD_PUBLIC_URI is not a zapi-dashboard setting; did you mean "
        "DASHBOARD_PUBLIC_URL? the settings are listed under Configuration in the README."
    )


def test_a_postgresql_url_without_its_driver_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'zapi-dashboard\[postgres\]'"):
        make(tmp_path, DATABASE_URL="postgresql://dash@127.0.0.1/dash")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRUSTED_PROXIES", "yes"),
        ("SOCKETS_PER_WORKER", "abc"),
        ("ZAPI_TIMEOUT_SECONDS", "abc"),
        ("RETENTION_DAYS", HUGE),
        ("PUBLIC_URL", "dashboard.example.com"),
    ],
)
def test_serve_stops_at_once_on_a_bad_setting(tmp_path, name, value):
    result = subprocess.run(
        cli_command("serve", "--port", str(free_port())),
        env={
            "PATH": "/usr/bin:/bin",
            "DASHBOARD_DATA_DIR": str(tmp_path),
            f"DASHBOARD_{name}": value,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # nothing printed as if it had started
    assert result.stderr.startswith(f"Error: DASHBOARD_{name} must be ")
    assert len(result.stderr.strip().splitlines()) == 1
