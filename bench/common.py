"""Plumbing shared by the benchmarks: ports, environment, stopping servers, the main loop."""

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# gunicorn's graceful_timeout is 20 s; idle workers leave far sooner than that.
STOP_DEADLINE_S = 30.0


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
