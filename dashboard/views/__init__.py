"""The blueprints, one per part of the site, and the URL parts they share."""

from werkzeug.routing import IntegerConverter

from ..models import MAX_ROW_ID


class RowIdConverter(IntegerConverter):
    """``<row_id:name>``: a row id; a number too large for one is no row, so it 404s."""

    def __init__(self, url_map):
        super().__init__(url_map, max=MAX_ROW_ID)
