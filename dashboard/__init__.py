"""zapi-dashboard: store, watch and search the callbacks Z-API sends."""

import logging

from flask import Flask
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from . import config, disk, errors, i18n, logs, migrate, navigation, security, views
from .accounts import login as auth
from .config import ConfigError
from .extensions import babel, csrf, db, sock, vault
from .logs import database_reason
from .paths import resource_dir


def create_app(test_config: dict | None = None) -> Flask:
    """Build the application: configuration, database, security, languages, blueprints."""
    app = Flask(
        __name__,
        template_folder=resource_dir("templates"),
        static_folder=resource_dir("static"),
    )
    config.load(app, test_config)
    vault.init(app.config["SETTINGS_KEY"])
    _open_database(app)
    disk.init(app, db.engine)
    for logger in (app.logger, logging.getLogger("werkzeug")):
        logs.protect(logger)
    security.init(app, sessionless_prefix=views.webhooks.PATH_PREFIX)
    csrf.init_app(app)
    csrf.exempt(views.webhooks.bp)  # Z-API authenticates with the secret in the URL
    auth.init(app)
    i18n.init(app, babel)
    navigation.init(app)
    sock.init_app(app)
    errors.register(app)
    views.register(app)
    return app


def _open_database(app: Flask) -> None:
    db.init(app.config["DATABASE_URL"], app.config["SQLITE_SYNCHRONOUS"])
    if not app.config["AUTO_MIGRATE"]:
        return
    try:
        migrate.upgrade(db.engine)
    except SQLAlchemyError as exc:
        url = make_url(app.config["DATABASE_URL"]).render_as_string(hide_password=True)
        raise ConfigError(f"Cannot open the database {url}: {database_reason(exc)}") from exc
