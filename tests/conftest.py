"""Shared fixtures: an app on a real SQLite file, and a real server in a subprocess."""

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

import dashboard.config
from dashboard import create_app
from dashboard.extensions import db

from .support import (
    POSTGRES_URL,
    SUITE_DATABASE,
    Server,
    database_for,
    drop_run_database,
    english_client,
    make_user,
    on_postgres,
    reset_postgres,
    sign_in,
    start_server,
    stop_server,
)

# On a loaded machine one example can take longer than Hypothesis's default deadline of
# 200 ms; that says nothing of the code under test, so no example has a deadline.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


def pytest_addoption(parser):
    """``--database=postgresql`` runs the suite on this machine's PostgreSQL."""
    parser.addoption(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="where the apps and servers of the tests store their data (default: sqlite)",
    )


def pytest_configure(config):
    """Remember the database of this run for the helpers in tests/support.py."""
    SUITE_DATABASE["name"] = config.getoption("--database")


def pytest_collection_modifyitems(config, items):
    """On PostgreSQL, leave out the tests of what only SQLite has (its file, its locks)."""
    if not on_postgres():
        return
    kept = [item for item in items if item.get_closest_marker("sqlite_only") is None]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


def pytest_sessionfinish(session, exitstatus):
    """Drop the PostgreSQL database this run made, if any."""
    drop_run_database()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Tests see only the DASHBOARD_* variables they set themselves."""
    for name in list(os.environ):
        if name.startswith("DASHBOARD_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def suite_database(monkeypatch):
    """On a PostgreSQL run, every app made in this process stores in its data dir's schema."""
    if not on_postgres():
        return
    load = dashboard.config.load

    def load_on_postgres(app, test_config):
        settings = dict(test_config or {})
        if "DATABASE_URL" not in settings and "DASHBOARD_DATABASE_URL" not in os.environ:
            data_dir = settings.get("DATA_DIR") or os.environ.get("DASHBOARD_DATA_DIR")
            settings["DATABASE_URL"] = database_for(data_dir or app.instance_path)
        load(app, settings)

    monkeypatch.setattr(dashboard.config, "load", load_on_postgres)


@pytest.fixture
def app(tmp_path):
    """An app whose data dir (and SQLite file, or schema) is a fresh temporary folder."""
    application = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data")})
    yield application
    db.engine.dispose()


@pytest.fixture
def pg_app(tmp_path):
    """An app on the PostgreSQL of this machine, its tables dropped first (skips without it)."""
    reset_postgres()
    application = create_app(
        {"TESTING": True, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": POSTGRES_URL}
    )
    yield application
    db.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_app(request):
    """The same test on a SQLite file and on PostgreSQL."""
    return request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")


@pytest.fixture
def client(app):
    """Flask's test client for ``app``, asking for English pages and messages."""
    return english_client(app)


@pytest.fixture
def webhook_path(app):
    """The app's webhook path, token included."""
    return f"/webhooks/{app.config['WEBHOOK_TOKEN']}"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """One real server (gunicorn, 2 workers) shared by a test module."""
    running = start_server(tmp_path_factory.mktemp("server"), "--workers", "2", "--threads", "8")
    yield running
    stop_server(running)


@pytest.fixture
def admin_client(app, client):
    """A test client signed in as the admin "ana"."""
    make_user("ana", "admin")
    assert sign_in(client, "ana").status_code == 302
    return client


@pytest.fixture
def zapi_admin(app, admin_client, httpserver):
    """``admin_client``, with the app calling a local HTTP server in place of Z-API."""
    app.config["ZAPI_BASE_URL"] = httpserver.url_for("").rstrip("/")
    return admin_client


@pytest.fixture
def viewer_client(app, client):
    """A test client signed in as the viewer "vera" (an admin "ana" exists too)."""
    make_user("ana", "admin")
    make_user("vera", "viewer")
    assert sign_in(client, "vera").status_code == 302
    return client


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for every browser test of the run."""
    from playwright.sync_api import expect, sync_playwright

    from .browser import LAUNCH_OPTIONS, TIMEOUT_MS

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(**LAUNCH_OPTIONS)
        yield chromium
        chromium.close()
