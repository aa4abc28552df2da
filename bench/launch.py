"""Run one benchmark server, bare or dashboard, with ``zapi-dashboard serve``'s gunicorn setup.

Usage: python bench/launch.py {bare,dashboard} --port P --workers N --threads N

Both servers get their settings from ``dashboard.server.gunicorn.server_options`` and run through
``DashboardServer``'s configuration path; the bare app runs on gunicorn's own gthread worker
instead of the dashboard's, so the differences between them are the app and that worker.
"""

import argparse

from dashboard import create_app
from dashboard.extensions import db
from dashboard.server import gunicorn as server


def benchmark_options(port: int, workers: int, threads: int) -> dict:
    """The ``serve`` settings on 127.0.0.1, with the access log turned off."""
    options = server.server_options("127.0.0.1", port, workers, threads)
    # The access log is off for both servers alike: one formatted line written per request
    # is a fixed cost that would dwarf the bare app's empty handler and blur the comparison
    # of the two apps (more so when the log goes to a pipe, as under systemd).
    options["accesslog"] = None
    return options


def main() -> None:
    """Parse the arguments and run the chosen server until it is signalled to stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=("bare", "dashboard"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=server.DEFAULT_WORKERS)
    parser.add_argument("--threads", type=int, default=server.DEFAULT_THREADS)
    args = parser.parse_args()

    options = benchmark_options(args.port, args.workers, args.threads)
    if args.app == "bare":
        from bare_app import create_bare_app  # bench/ is on sys.path: this script lives there

        # The baseline is the plain app as gunicorn serves it: its stock threaded worker,
        # not the dashboard's, whose poller reads each whole request before a thread does.
        options["worker_class"] = "gthread"
        server.run(options, create_bare_app())
        return
    # As `zapi-dashboard serve` does: build and migrate once in the master, then let each
    # worker open its own connections.
    app = create_app()
    db.engine.dispose()
    server.run(options, app)


if __name__ == "__main__":
    main()
