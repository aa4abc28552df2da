"""Process-wide singletons, created unbound here and bound to the app in create_app."""

from .database import Database
from .writer import BatchWriter

db = Database()
callback_writer = BatchWriter(db.writing)
