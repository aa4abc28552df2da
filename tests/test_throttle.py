"""Sign-in throttling: per address and per username, shared by every worker."""

import requests

from dashboard.accounts import throttle

from .support import (
    PASSWORD,
    create_user_with_cli,
    csrf_token,
    database_url,
    make_user,
    sign_in,
    start_server,
    stop_server,
)


def test_the_eleventh_failure_within_a_minute_gets_429(app, client):
    make_user("ana")
    for _ in range(10):
        assert sign_in(client, "ana", "wrong password").status_code == 200
    response = sign_in(client, "ana", "wrong password")
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    # Even the right password waits now.
    assert sign_in(client, "ana").status_code == 429


def test_the_same_username_from_many_addresses_is_throttled(app, client):
    make_user("ana")
    for index in range(10):
        address = f"10.0.0.{index}"
        sign_in_from(client, address, "wrong password")
    assert sign_in_from(client, "10.0.1.1", "wrong password").status_code == 429


def sign_in_from(client, address, password):
    environ = {"REMOTE_ADDR": address}
    token = csrf_token(client.get("/login", environ_base=environ).get_data(as_text=True))
    return client.post(
        "/login",
        data={"username": "ana", "password": password, "csrf_token": token},
        environ_base=environ,
    )


def test_successful_sign_ins_do_not_count(app, client):
    make_user("ana")
    for _ in range(12):
        assert sign_in(client, "ana").status_code == 302


def test_attempts_older_than_the_window_are_forgotten(app, monkeypatch):
    from datetime import timedelta

    from dashboard.extensions import db

    with db.writing() as transaction:
        for _ in range(10):
            assert throttle.admit(transaction, "1.2.3.4", "ana")[0] is not None
        assert throttle.admit(transaction, "1.2.3.4", "ana")[0] is None
    later = throttle.utcnow() + timedelta(seconds=61)
    monkeypatch.setattr(throttle, "utcnow", lambda: later)
    with db.writing() as transaction:
        assert throttle.admit(transaction, "1.2.3.4", "ana")[0] is not None


def test_throttling_holds_across_workers_and_instances(tmp_path):
    data_dir = tmp_path / "first"
    # Two instances on one database, each with two gunicorn workers; each instance has a
    # data dir of its own (one data dir serves one server), the second the first's database.
    database = {"DASHBOARD_DATABASE_URL": database_url(data_dir)}
    first = start_server(data_dir, "--workers", "2", "--threads", "4", name="first")
    try:
        second = start_server(
            tmp_path / "second", "--workers", "2", "--threads", "4", name="second", env=database
        )
        try:
            create_user_with_cli(data_dir, "ana", PASSWORD)
            statuses = [fail_once(server) for server in [first, second] * 5 + [first]]
            assert statuses == [200] * 10 + [429]
        finally:
            stop_server(second)
    finally:
        stop_server(first)


def fail_once(server):
    # A fresh connection each time, so gunicorn hands it to whichever worker is free.
    with requests.Session() as browser:
        browser.headers["Connection"] = "close"
        page = browser.get(f"{server.base_url}/login", timeout=30)
        form = {"username": "ana", "password": "wrong", "csrf_token": csrf_token(page.text)}
        return browser.post(f"{server.base_url}/login", data=form, timeout=30).status_code
