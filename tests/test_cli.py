import importlib.metadata
import socket
import subprocess

import pytest
import requests
from click.testing import CliRunner

from dashboard import migrate
from dashboard.cli import main

from .support import TOKEN, cli_command, create_user_with_cli, start_server, stop_server


def test_webhook_url_uses_the_public_url(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DASHBOARD_WEBHOOK_TOKEN", TOKEN)
    monkeypatch.setenv("DASHBOARD_PUBLIC_URL", "https://dash.example.com/")
    result = CliRunner().invoke(main, ["webhook-url"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"https://dash.example.com/webhooks/{TOKEN}"
    assert "Built from DASHBOARD_PUBLIC_URL (https://dash.example.com)." in result.stderr


def test_webhook_url_without_public_url_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["webhook-url"])
    assert result.exit_code == 0
    token = (tmp_path / "webhook_token").read_text().strip()
    assert f"http://127.0.0.1:8000/webhooks/{token}" in result.stdout
    assert "DASHBOARD_PUBLIC_URL" in result.stderr


def test_db_upgrade_reports_the_revision(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"Database is at revision {migrate.head_revision()}." in result.output


def test_serve_refuses_a_bad_data_dir_with_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        cli_command("serve", "--port", "1"),
        env={"DASHBOARD_DATA_DIR": str(blocker / "data"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.startswith("Error: Cannot create the data directory")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_refuses_a_short_token_with_one_clear_line(tmp_path):
    result = subprocess.run(
        cli_command("serve"),
        env={"DASHBOARD_DATA_DIR": str(tmp_path), "DASHBOARD_WEBHOOK_TOKEN": "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "at least 22" in result.stderr
    assert "Traceback" not in result.stderr


def test_two_servers_run_side_by_side_without_a_shared_control_socket(tmp_path):
    # gunicorn's default control socket lives under $XDG_RUNTIME_DIR or $HOME.
    (tmp_path / "home").mkdir()
    home = {"HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(tmp_path / "home")}
    first = start_server(tmp_path / "one", "--workers", "1", "--threads", "4", env=home)
    try:
        second = start_server(tmp_path / "two", "--workers", "1", "--threads", "4", env=home)
        try:
            for server in (first, second):
                assert requests.get(f"{server.base_url}/healthz", timeout=30).ok
                assert "Control socket" not in server.log()
            assert list(tmp_path.glob("home/**/*.ctl")) == []
        finally:
            stop_server(second)
    finally:
        stop_server(first)


def test_create_user_reads_the_password_from_stdin(tmp_path, monkeypatch):
    from dashboard.accounts import users as accounts
    from dashboard.extensions import db

    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(
        main,
        ["create-user", "Ana", "--role", "admin", "--password-stdin"],
        input="pw with space \n",
    )
    assert result.exit_code == 0, result.output
    assert "Created admin ana." in result.output
    with db.reading() as session:
        user = accounts.find_user(session, "ana")
        # Exactly one trailing newline is dropped; the trailing space is the password's.
        assert accounts.password_matches(user.password_hash, "pw with space ")
    db.engine.dispose()


def test_create_user_refuses_bad_input_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    short = runner.invoke(main, ["create-user", "ana", "--password-stdin"], input="short\n")
    assert short.exit_code != 0
    assert "at least 10 characters" in short.output
    runner.invoke(main, ["create-user", "ana", "--password-stdin"], input="long enough pw\n")
    taken = runner.invoke(
        main, ["create-user", "ANA", "--password-stdin"], input="long enough pw\n"
    )
    assert "already taken" in taken.output
    role = runner.invoke(main, ["create-user", "bia", "--role", "owner"])
    assert role.exit_code == 2


def test_set_password_changes_it(tmp_path, monkeypatch):
    from dashboard.accounts import users as accounts
    from dashboard.extensions import db

    monkeypatch.setenv("DASHBOARD_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    runner.invoke(main, ["create-user", "ana", "--password-stdin"], input="first password\n")
    result = runner.invoke(
        main, ["set-password", "ana", "--password-stdin"], input="second password\n"
    )
    assert result.exit_code == 0, result.output
    with db.reading() as session:
        assert accounts.password_matches(
            accounts.find_user(session, "ana").password_hash, "second password"
        )
    missing = runner.invoke(main, ["set-password", "nobody", "--password-stdin"], input="x" * 12)
    assert "There is no account called 'nobody'." in missing.output
    db.engine.dispose()


def test_serve_prints_a_setup_link_only_while_no_user_exists(tmp_path):
    server = start_server(tmp_path / "data", "--workers", "1", "--threads", "4")
    try:
        link = next(line for line in server.log().splitlines() if "/setup/" in line)
        url = link.split(": ", 1)[1].strip()
        assert url.startswith(f"{server.base_url}/setup/")
        assert requests.get(url, timeout=30).status_code == 200
    finally:
        stop_server(server)
    create_user_with_cli(tmp_path / "data", "ana", "long enough pw")
    again = start_server(tmp_path / "data", "--workers", "1", "--threads", "4", name="again")
    try:
        assert "/setup/" not in again.log()
        setup_path = url.removeprefix(server.base_url)
        assert requests.get(again.base_url + setup_path, timeout=30).status_code == 404
    finally:
        stop_server(again)


def test_version_is_the_installed_package_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"zapi-dashboard {importlib.metadata.version('zapi-dashboard')}\n"


def test_serve_on_a_busy_port_stops_at_once_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            cli_command("serve", "--port", str(port)),
            env={"PATH": "/usr/bin:/bin", "DASHBOARD_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stdout == ""  # no "listening on" nor a webhook URL for a server that isn't
    assert result.stderr == f"Error: port {port} is in use; pick another with --port.\n"


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("192.0.2.1", "192.0.2.1 is not an address of this machine; use --host 127.0.0.1"),
        ("no-such-host.invalid", "no-such-host.invalid is not a known address"),
    ],
)
def test_serve_on_an_address_it_cannot_have_says_so(tmp_path, host, message):
    result = subprocess.run(
        cli_command("serve", "--host", host, "--port", "8000"),
        env={"PATH": "/usr/bin:/bin", "DASHBOARD_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {message}")
    assert len(result.stderr.splitlines()) == 1
