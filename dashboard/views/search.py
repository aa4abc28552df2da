"""Search past callbacks by phone and filters, and one callback's detail page."""

from flask import Blueprint

bp = Blueprint("search", __name__)
