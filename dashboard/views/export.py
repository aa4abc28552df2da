"""CSV export of a search."""

from flask import Blueprint

bp = Blueprint("export", __name__)
