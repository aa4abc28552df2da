"""Process-wide singletons, created unbound here and bound to the app in create_app."""

from flask_babel import Babel
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from .database import Database
from .vault import Vault
from .writer import BatchWriter

db = Database()
callback_writer = BatchWriter(db.writing)
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
vault = Vault()
