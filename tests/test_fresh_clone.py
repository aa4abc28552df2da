"""What a newcomer types: clone, a fresh venv, `pip install .`, `zapi-dashboard serve`.

The rest of the suite runs on an editable install, which cannot see what only a real
install shows: the installed package's templates, static files and migrations, and a
server started inside the checkout that must still run the installed code and open one
database. This test copies the checkout's tracked files as they are now (committed or
not) into a fresh clone and runs the README's command there, with no DASHBOARD_* set.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .support import SEED, free_port, missing, wait_until

ROOT = Path(__file__).resolve().parent.parent
INSTALL_DEADLINE_SECONDS = 600
START_DEADLINE_SECONDS = 120
WEBHOOK_LINE = re.compile(r"Z-API webhook URL \(keep it secret\): (\S+)")
SETUP_LINE = re.compile(r"Create the first admin \(link valid 24 h, once\): (\S+)")

# A newcomer's first run is on the embedded SQLite default.
pytestmark = [pytest.mark.server, pytest.mark.sqlite_only]


def run(command: list[str], cwd: Path, env: dict | None = None) -> None:
    """Run one setup step; fail with its output if it does not succeed."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL_DEADLINE_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"


def snapshot(clone: Path) -> None:
    """Clone this repository at its working tree's state (tracked files, edits included)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        missing("needs git and a git checkout of zapi-dashboard")
    state = subprocess.run(
        ["git", "stash", "create"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    run(["git", "clone", "--quiet", "--shared", str(ROOT), str(clone)], ROOT)
    if state:  # uncommitted edits: the stash commit's objects are shared with the clone
        run(["git", "checkout", "--quiet", "--detach", state], clone)


@pytest.fixture
def newcomer_server(tmp_path):
    """`pip install . && zapi-dashboard serve` typed inside a fresh clone; yields its log."""
    clone, venv = tmp_path / "zapi-dashboard", tmp_path / "venv"
    snapshot(clone)
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    environment.pop("VIRTUAL_ENV", None)
    environment.pop("PYTHONPATH", None)  # a checkout on it would run instead of the install
    run([str(venv / "bin" / "pip"), "install", "--quiet", "."], clone, environment)

    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "zapi-dashboard"), "serve", "--port", str(port)],
            cwd=clone,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield clone, venv, port, log_path, process
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=30)


def test_the_readme_command_works_in_a_fresh_clone(newcomer_server):
    clone, venv, port, log_path, process = newcomer_server
    base = f"http://127.0.0.1:{port}"

    def printed(pattern):
        log = log_path.read_text(errors="replace")
        if "Traceback" in log or process.poll() is not None:
            raise AssertionError(f"serve failed:\n{log}")
        return pattern.search(log)

    setup = wait_until(
        lambda: printed(SETUP_LINE), START_DEADLINE_SECONDS, "the setup link to be printed"
    )
    webhook = printed(WEBHOOK_LINE)
    assert webhook, log_path.read_text()
    assert "Traceback" not in log_path.read_text()

    def healthy():
        try:
            return requests.get(f"{base}/healthz", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(healthy, START_DEADLINE_SECONDS, "/healthz to answer 200")

    form = requests.get(setup.group(1), timeout=30)
    assert form.status_code == 200
    assert 'name="password"' in form.text
    assert 'name="csrf_token"' in form.text

    stored = requests.post(webhook.group(1), json=SEED, timeout=30)
    assert stored.status_code == 200, stored.text
    assert stored.json()["duplicate"] is False

    # The server ran the installed package, and so did its migration: one database, the
    # installed package's default, and nothing made in the checkout it was started from.
    assert not (clone / "instance").exists()
    assert list(venv.glob("var/dashboard-instance/dashboard.sqlite3"))
    assert "Traceback" not in log_path.read_text()
