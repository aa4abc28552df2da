"""serve raises its limit on open files to what its live sockets and connections need."""

import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.config import DEFAULTS
from dashboard.server import gunicorn
from dashboard.server.open_files import files_needed

from .support import start_server, stop_server, wait_until

NEEDED = files_needed(DEFAULTS["SOCKETS_PER_WORKER"], gunicorn.WORKER_CONNECTIONS)
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def soft_limit_of(pid: int) -> int:
    """The soft limit on open files of process ``pid``, as the kernel shows it."""
    limits = Path(f"/proc/{pid}/limits").read_text()
    return int(re.search(r"^Max open files\s+(\d+)", limits, re.MULTILINE)[1])


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.server
@pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < 1024, reason="hard limit < 1024")
def test_a_server_started_with_a_stock_limit_raises_it_for_its_workers(tmp_path):
    server = start_server(tmp_path / "data", open_files=1024)
    try:
        expected = NEEDED if HARD == resource.RLIM_INFINITY else min(NEEDED, HARD)
        assert soft_limit_of(server.process.pid) == expected
        workers = wait_until(lambda: children_of(server.process.pid), message="its workers")
        assert [soft_limit_of(worker) for worker in workers] == [expected] * len(workers)
    finally:
        stop_server(server)


def raise_in_child(soft: int, hard: int, forbidden: bool = False) -> tuple[str, int]:
    """What raise_limit says in a process started at ``soft``/``hard``, and its soft limit then.

    A child, since a lowered hard limit cannot be raised again; ``forbidden`` makes the
    call fail with EPERM, as systemd's SystemCallFilter=~@resources does.
    """
    child = (
        "import resource\n"
        "from dashboard.server import open_files\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        f"if {forbidden}:\n"
        "    def refuse(*args):\n"
        "        raise PermissionError(1, 'Operation not permitted')\n"
        "    open_files.resource.setrlimit = refuse\n"
        f"print(open_files.raise_limit({NEEDED}))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    ran = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    warning, soft_after = ran.stdout.strip().rsplit("\n", 1)
    return warning, int(soft_after)


def test_a_limit_the_system_will_not_raise_is_said_and_used_whole():
    warning, soft = raise_in_child(256, 1500)
    assert soft == 1500
    assert "lets a process open 1500 files" in warning
    assert f"LimitNOFILE={NEEDED}" in warning


def test_a_limit_already_high_enough_is_left_alone():
    assert raise_in_child(NEEDED + 5, NEEDED + 5) == ("None", NEEDED + 5)


def test_a_sandbox_that_forbids_raising_the_limit_gets_the_warning_not_a_crash():
    warning, soft = raise_in_child(256, 1500, forbidden=True)
    assert soft == 256
    assert "lets a process open 256 files" in warning


def test_the_systemd_unit_gives_the_limit_a_worker_needs():
    unit = (Path(__file__).parents[1] / "deploy" / "zapi-dashboard.service").read_text()
    assert int(re.search(r"^LimitNOFILE=(\d+)$", unit, re.MULTILINE)[1]) >= NEEDED
