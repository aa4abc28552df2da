"""The blueprints, one per part of the site, and the URL parts they share."""

from flask import Flask
from werkzeug.routing import IntegerConverter

from ..models import MAX_ROW_ID
from . import (
    account,
    api,
    assets,
    auth,
    export,
    feed,
    health,
    live,
    messages,
    metrics,
    refused,
    search,
    settings,
    users,
    webhooks,
)

BLUEPRINTS = (
    webhooks.bp,
    health.bp,
    assets.bp,
    auth.bp,
    feed.bp,
    search.bp,
    messages.bp,
    export.bp,
    users.bp,
    refused.bp,
    account.bp,
    settings.bp,
    api.bp,
    live.bp,
    metrics.bp,
)


class RowIdConverter(IntegerConverter):
    """``<row_id:name>``: a row id; a number too large for one is no row, so it 404s."""

    def __init__(self, url_map):
        super().__init__(url_map, max=MAX_ROW_ID)


def register(app: Flask) -> None:
    """Register every blueprint, after the URL converter their routes use."""
    app.url_map.converters["row_id"] = RowIdConverter
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
