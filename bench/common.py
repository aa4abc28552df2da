"""Plumbing shared by the benchmarks: ports, environment, stopping servers, the main loop."""

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

# gunicorn's graceful_timeout is 20 s; idle workers leave far sooner than that.
STOP_DEADLINE_S = 30.0
# Generous: a cold start on a busy 2-core machine imports Flask, SQLAlchemy and Alembic.
START_DEADLINE_S = 60.0
# The webhook waits up to WRITE_TIMEOUT_SECONDS (30 s) for its commit before a 503.
REQUEST_TIMEOUT_S = 40.0
ADMIN = "bench-admin"
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class BenchError(Exception):
    """The benchmark could not run; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(data_dir: Path | None, token: str) -> dict[str, str]:
    """This process's environment with only the benchmark's DASHBOARD_* settings."""
    # An inherited DASHBOARD_DATABASE_URL (say) would point the benchmark at a real database.
    env = {key: value for key, value in os.environ.items() if not key.startswith("DASHBOARD_")}
    env["DASHBOARD_WEBHOOK_TOKEN"] = token
    if data_dir is not None:
        env["DASHBOARD_DATA_DIR"] = str(data_dir)
    return env


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after a deadline."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_DEADLINE_S)
    # The workers share the master's process group: this also ends any orphaned worker.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass(frozen=True)
class Server:
    """A running ``zapi-dashboard serve`` and where its output goes."""

    process: subprocess.Popen
    port: int
    token: str
    log_path: Path

    @property
    def base_url(self) -> str:
        """The server's address, e.g. ``http://127.0.0.1:8000``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        """The webhook URL, token included."""
        return f"{self.base_url}/webhooks/{self.token}"

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


def cli_path() -> str:
    """The ``zapi-dashboard`` console script of this virtualenv."""
    beside = Path(sys.executable).with_name("zapi-dashboard")
    found = str(beside) if beside.exists() else shutil.which("zapi-dashboard")
    if found is None:
        raise BenchError("zapi-dashboard is not installed (pip install -e . in the repository)")
    return found


def create_admin(env: dict[str, str], password: str, username: str = ADMIN) -> None:
    """Add the benchmark's admin with ``zapi-dashboard create-user --password-stdin``."""
    command = [cli_path(), "create-user", username, "--role", "admin", "--password-stdin"]
    try:
        result = subprocess.run(
            command,
            input=password + "\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=START_DEADLINE_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError("create-user did not finish in time") from None
    if result.returncode != 0:
        raise BenchError(f"create-user failed: {result.stderr.strip() or result.stdout.strip()}")


@contextlib.contextmanager
def running(command: list[str], port: int, log_path: Path, env: dict) -> Iterator[Server]:
    """Run a server ``command`` that listens on ``port``; always stop it at the end."""
    # A file, not a pipe: a pipe nobody drains would block the server once it fills up.
    # A session of its own keeps Ctrl-C away from gunicorn, so shutdown stays ours to do,
    # and makes the master and its workers one process group to signal.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield Server(process, port, env["DASHBOARD_WEBHOOK_TOKEN"], log_path)
    finally:
        stop_server(process)


def running_server(workers: int, threads: int, workdir: Path, env: dict):
    """Run ``zapi-dashboard serve`` on a free port of 127.0.0.1 (a context manager)."""
    port = free_port()
    command = [
        cli_path(),
        "serve",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        f"--threads={threads}",
    ]
    return running(command, port, workdir / "server.log", env)


def wait_until_serving(server: Server, path: str = "/healthz") -> None:
    """Poll ``path`` until a worker answers it; fail if the server exits or never does."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"the server exited with code {server.process.returncode}:\n{server.log_text()}"
            )
        # The master accepts connections as soon as it binds; an HTTP answer shows that a
        # worker has loaded the app, which is what the measurements need.
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{server.base_url}{path}", timeout=5)
            return
        time.sleep(0.05)
    raise BenchError(f"the server did not answer within {START_DEADLINE_S:.0f} s")


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...; see proc(5))."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``: gunicorn's workers, for its master."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat_fields(int(entry.name))[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def proc_number(path: str, key: str) -> int | None:
    """The ``key:  N [kB]`` value of a /proc status-like file, or None when absent."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def sign_in(base_url: str, password: str, username: str = ADMIN) -> requests.Session:
    """Sign the admin in through the real form (GET /login, csrf_token, POST)."""
    session = requests.Session()
    page = session.get(f"{base_url}/login", timeout=REQUEST_TIMEOUT_S)
    found = CSRF_FIELD.search(page.text)
    if page.status_code != 200 or found is None:
        raise BenchError(f"GET /login gave {page.status_code} and no CSRF token")
    answer = session.post(
        f"{base_url}/login",
        data={"username": username, "password": password, "csrf_token": found.group(1)},
        allow_redirects=False,
        timeout=REQUEST_TIMEOUT_S,
    )
    if answer.status_code not in (302, 303):
        raise BenchError(f"signing in failed: POST /login gave {answer.status_code}")
    return session


def _exit_on_sigterm(signum, frame) -> None:
    # SystemExit, so that the cleanup in ``finally`` blocks still runs.
    sys.exit(128 + signum)


def main(name: str, parse_args: Callable[[], argparse.Namespace], run: Callable[..., None]) -> int:
    """Run ``run(args, workdir)`` in a temp dir that is always removed; return the exit code."""
    args = parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix=f"zapi-{name}-bench-"))
    try:
        run(args, workdir)
        return 0
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_temp:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
