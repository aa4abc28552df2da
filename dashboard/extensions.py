"""Process-wide singletons, created unbound here and bound to the app in create_app."""

from flask_babel import Babel
from flask_login import LoginManager
from flask_sock import Sock
from flask_wtf.csrf import CSRFProtect

from .database import Database
from .live import Hub
from .settings.vault import Vault
from .writer import BatchWriter

db = Database()
hub = Hub(db)
# Each batch tells the other instances' live feeds (PostgreSQL) in its own transaction,
# and wakes this process's live poller the moment it commits.
callback_writer = BatchWriter(db.writing, in_transaction=hub.announce, on_commit=hub.notify)
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
sock = Sock()
vault = Vault()
