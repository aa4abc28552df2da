"""The production server: gunicorn with threaded workers, serving create_app()."""

import errno
import gc
import socket

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from .. import metrics
from ..logs import protect
from .worker import DashboardWorker

# Sized for a 1-2 core VPS: one worker process (the master restarts it if it dies) keeps
# the whole server near 150 MB, and its threads serve Z-API's webhook calls and the pages.
# Open dashboards' live sockets hold no thread (dashboard/live_io.py), nor do slow clients
# (dashboard/server/worker.py). SQLite takes one writer at a time anyway; --workers 2 adds
# a second core's worth of page rendering.
DEFAULT_WORKERS = 1
DEFAULT_THREADS = 96
# The connections one worker serves at once (gunicorn's own default), live sockets aside:
# those are the dashboard's, up to DASHBOARD_SOCKETS_PER_WORKER.
WORKER_CONNECTIONS = 1000
HOST_HINT = "use --host 127.0.0.1 (or 0.0.0.0 for every address of this machine)"


class RedactingLogger(Logger):
    """Gunicorn's logger, with webhook tokens removed from access and error lines."""

    def setup(self, cfg):
        """Configure as gunicorn does, then add the redacting filter."""
        super().setup(cfg)
        protect(self.access_log)
        protect(self.error_log)


class DashboardServer(BaseApplication):
    """Runs gunicorn in this process with settings given in code, not a config file."""

    def __init__(self, options: dict, app: Flask | None = None):
        self.options = options
        self.application = app
        super().__init__()

    def load_config(self):
        """Apply our settings to gunicorn's configuration."""
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        """The app, built once in the master and shared by the forked workers."""
        return self.application


def server_options(host: str, port: int, workers: int, threads: int) -> dict:
    """Gunicorn settings for ``zapi-dashboard serve``."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_connections": WORKER_CONNECTIONS,
        "worker_class": DashboardWorker,
        "logger_class": RedactingLogger,
        "accesslog": "-",
        "errorlog": "-",
        # Several dashboards on one machine would fight over gunicorn's shared default
        # control socket path; we do not use the control interface, so turn it off.
        "control_socket_disable": True,
        # Slow clients and sleeping laptops must not hold a worker hostage forever.
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        # Proxy headers are trusted in one place only, the app's DASHBOARD_TRUSTED_PROXIES.
        "secure_scheme_headers": {},
        # Workers fork from a master that already loaded the app: their memory pages are
        # shared until written. Threads (writer, poller) start lazily in each worker.
        "preload_app": True,
        "pre_fork": _freeze_loaded_objects,
        "post_fork": _forget_inherited_connections,
        # Each start counts afresh in a folder of its own, which goes with the server.
        "on_starting": metrics.start_multiprocess,
        "child_exit": metrics.forget_worker,
        "on_exit": metrics.stop_multiprocess,
    }


def _freeze_loaded_objects(arbiter, worker):
    """Keep the garbage collector off the loaded app's objects, so forked pages stay shared."""
    gc.freeze()


def _forget_inherited_connections(arbiter, worker):
    """A connection opened before fork must not be used by two processes."""
    from ..extensions import db

    if db.engine is not None:
        db.engine.dispose(close=False)


def run(options: dict, app: Flask) -> None:
    """Serve ``app`` with gunicorn and block until it exits."""
    DashboardServer(options, app).run()


def address_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port``, in one line; None when it can."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        return f"{host} is not a known address; {HOST_HINT}."
    with socket.socket(family, kind, protocol) as probe:
        # As gunicorn does, so a port left in TIME_WAIT by a previous run counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return _bind_failure(host, port, exc)
    return None


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use; pick another with --port."
    if exc.errno == errno.EACCES:
        return (
            f"port {port} needs root; use a port above 1023 (the default 8000) "
            "behind Caddy or nginx."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; {HOST_HINT}."
    return f"cannot listen on {host}:{port}: {exc.strerror}."
