"""The baseline for bench/ingest.py: a Flask app whose webhook route does nothing."""

from flask import Flask


def create_bare_app() -> Flask:
    """A Flask app answering "ok" to ``POST /webhooks/<token>`` without storing anything."""
    app = Flask(__name__)

    # Same URL shape as the dashboard's webhook, so both servers route the same path.
    @app.post("/webhooks/<token>")
    def receive(token: str) -> str:
        return "ok"

    return app
