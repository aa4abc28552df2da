"""Prometheus figures: the instruments, their storage shared by gunicorn's workers, the scrape.

``zapi-dashboard serve`` gives every start a fresh private folder where each worker keeps
its figures (prometheus_client's multiprocess mode), so a scrape answered by any worker
adds up all of them. Anywhere else (``flask run``, tests) the figures live in the process.

prometheus_client decides where values are kept when it is imported, and the server's
master loads the app before it knows its folder: so it is imported here only on first use,
which happens in a worker, after the folder is set.
"""

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from functools import wraps

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "zapi_dashboard"
# Callback types get a label of their own; any other type a sender invents counts as
# "other", so no request can add a time series.
CALLBACK_TYPES = frozenset({"DeliveryCallback", "MessageStatusCallback"})
OTHER_TYPE = "other"
# Up to the writer's MAX_BATCH (256).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_lock = threading.Lock()
_instruments = None


class _Instruments:
    """The figures this process counts; built once, on first use."""

    def __init__(self):
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        # Without the *_created series, as in multiprocess mode, one process's scrape reads
        # the same as a server's.
        disable_created_metrics()
        # Not the library's global registry: ours holds only these, not its process collectors.
        self.registry = CollectorRegistry(auto_describe=True)
        self.callbacks = Counter(
            f"{PREFIX}_callbacks",
            "Webhook calls by callback type and outcome (stored, duplicate, rejected_<status>, "
            "unavailable).",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.webhook_seconds = Histogram(
            f"{PREFIX}_webhook_request_duration_seconds",
            "Time to answer a webhook call, storage included.",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_writer_batch_size",
            "Callbacks committed together by a writer transaction.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.live_sockets = Gauge(
            f"{PREFIX}_live_sockets",
            "Live feed sockets open now, all workers together.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.database_errors = Counter(
            f"{PREFIX}_database_errors",
            "Database operations that failed, by the part of the server that ran them.",
            ["component"],
            registry=self.registry,
        )


def _get() -> _Instruments:
    global _instruments
    if _instruments is None:
        with _lock:  # two first requests at once must not register the figures twice
            if _instruments is None:
                _instruments = _Instruments()
    return _instruments


def callback_type(declared: str | None) -> str:
    """The ``type`` label of a callback: its Z-API type if known, else "other"."""
    return declared if declared in CALLBACK_TYPES else OTHER_TYPE


def count_callback(declared_type: str | None, outcome: str) -> None:
    """Count one webhook call of ``declared_type`` that ended in ``outcome``."""
    _get().callbacks.labels(callback_type(declared_type), outcome).inc()


def count_rejection(status: int) -> None:
    """Count one webhook call refused with ``status`` (its type is unknown or unparsed)."""
    count_callback(None, f"rejected_{status}")


def timed_webhook(view: Callable) -> Callable:
    """Decorate the webhook view so each call's duration is observed."""

    @wraps(view)
    def timed(*args, **kwargs):
        with _get().webhook_seconds.time():
            return view(*args, **kwargs)

    return timed


def observe_batch(size: int) -> None:
    """Record the size of one batch the writer is about to commit."""
    _get().batch_size.observe(size)


def set_live_sockets(count: int) -> None:
    """This process now holds ``count`` live sockets."""
    _get().live_sockets.set(count)


def count_database_error(component: str) -> None:
    """Count one failed database operation of ``component`` (writer, live, health, ...)."""
    _get().database_errors.labels(component).inc()


def start_multiprocess(server) -> None:
    """Give this server start a fresh private folder for its workers' figures (0700)."""
    # gunicorn's on_starting hook: the master runs it before any worker forks. Always a new
    # folder, so a restart never adds the figures of the previous run.
    os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="zapi-dashboard-metrics-")


def forget_worker(server, worker) -> None:
    """Drop a dead worker's live figures (its open sockets), keeping its counts."""
    # gunicorn's child_exit hook, run by the master for each worker that ended.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def stop_multiprocess(server) -> None:
    """Remove the folder of this server start's figures (gunicorn's on_exit hook)."""
    folder = os.environ.pop(MULTIPROCESS_DIR, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def exposition(
    last_callback_age: float | None, disk_free_bytes: int | None, disk_full: bool
) -> tuple[bytes, str]:
    """The text of a scrape and its content type: every worker's figures and the current ones.

    The caller reads at scrape time ``last_callback_age`` (seconds; None before the first
    callback), and the database's disk: its free bytes (None when not local) and whether
    it is too full to store callbacks.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.multiprocess import MultiProcessCollector

    # Built here too, so even a worker that has counted nothing yet reports its zeros.
    counted = _get().registry
    if os.environ.get(MULTIPROCESS_DIR):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)
    age = GaugeMetricFamily(
        f"{PREFIX}_last_callback_age_seconds", "Seconds since the newest stored callback arrived."
    )
    if last_callback_age is not None:
        age.add_metric([], last_callback_age)
    free = GaugeMetricFamily(
        f"{PREFIX}_disk_free_bytes",
        "Free bytes on the disk of the SQLite database (none on PostgreSQL).",
    )
    if disk_free_bytes is not None:
        free.add_metric([], disk_free_bytes)
    full = GaugeMetricFamily(
        f"{PREFIX}_disk_full", "1 while the disk is too full to store callbacks, else 0."
    )
    full.add_metric([], int(disk_full))
    current = CollectorRegistry(auto_describe=False)
    current.register(_Fixed([age, free, full]))
    return generate_latest(counted) + generate_latest(current), CONTENT_TYPE_LATEST


class _Fixed:
    """A collector of families already measured."""

    def __init__(self, families):
        self._families = families

    def collect(self):
        """The families, as given."""
        return iter(self._families)
