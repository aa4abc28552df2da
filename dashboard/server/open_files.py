"""The open-file limit: each live socket and each connection of a worker is a descriptor.

A stock system lets a process open 1024 files, fewer than a worker at its defaults may
hold (1000 live sockets and 1000 connections). Past the limit the kernel refuses new
connections outright, so ``serve`` raises its own limit, which the workers inherit, up to
what the system allows.
"""

import resource

# What a worker has open besides its connections: the database and its write-ahead log,
# the write lock, logs, the listening socket, the pipes and sockets that wake its threads.
OTHER_FILES = 64


def files_needed(sockets_per_worker: int, connections_per_worker: int) -> int:
    """How many descriptors one worker may hold at once at these settings."""
    return sockets_per_worker + connections_per_worker + OTHER_FILES


def raise_limit(needed: int) -> str | None:
    """Let this process (and the workers it starts) open ``needed`` files if the system allows.

    Returns what to tell the operator when it does not allow that many, else None.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    allowed = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, hard))
    except (OSError, ValueError):  # a sandbox that forbids the call (seccomp's EPERM)
        allowed = soft
    if allowed >= needed:
        return None
    return (
        f"this system lets a process open {allowed} files, and a worker may need {needed} "
        "(DASHBOARD_SOCKETS_PER_WORKER live sockets and its connections): past that, new "
        f"connections are refused. Raise the limit (systemd: LimitNOFILE={needed}; a "
        "shell: ulimit -n) or lower DASHBOARD_SOCKETS_PER_WORKER."
    )
