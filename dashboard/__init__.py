"""zapi-dashboard: store, watch and search the callbacks Z-API sends."""

import logging

from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from . import config, errors, logs, migrate
from .config import ConfigError
from .extensions import db
from .paths import resource_dir
from .views import health, webhooks


def create_app(test_config: dict | None = None) -> Flask:
    """Build the application: configuration, database, logging, error pages, blueprints."""
    app = Flask(
        __name__,
        template_folder=resource_dir("templates"),
        static_folder=resource_dir("static"),
    )
    config.load(app, test_config)
    _open_database(app)
    for logger in (app.logger, logging.getLogger("werkzeug")):
        logs.protect(logger)
    errors.register(app)
    for blueprint in (webhooks.bp, health.bp):
        app.register_blueprint(blueprint)
    return app


def _open_database(app: Flask) -> None:
    db.init(app.config["DATABASE_URL"], app.config["SQLITE_SYNCHRONOUS"])
    if not app.config["AUTO_MIGRATE"]:
        return
    try:
        migrate.upgrade(db.engine)
    except SQLAlchemyError as exc:
        url = make_url(app.config["DATABASE_URL"]).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise ConfigError(f"Cannot open the database {url}: {reason}") from exc
