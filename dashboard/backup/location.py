"""Where a dashboard's data is: the SQLite file behind its URL, the data dir's secrets."""

from pathlib import Path

from sqlalchemy.engine import make_url

from .archive import SECRET_FILES
from .errors import BackupError, reason


def sqlite_file(database_url: str, data_dir: str | Path, action: str) -> Path:
    """The SQLite file of ``database_url``; PostgreSQL is refused with what to use instead."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return Path(url.database)
    secret_files = f"the secret files ({', '.join(SECRET_FILES)}) of {data_dir}"
    # pg_dump and pg_restore take a libpq URL: SQLAlchemy's driver suffix is not one.
    meaning = "where <database> is DASHBOARD_DATABASE_URL without +psycopg"
    if action == "backup":
        raise BackupError(
            "This dashboard keeps its data in PostgreSQL: back it up with pg_dump "
            f"(e.g. pg_dump --format=custom --file=dashboard.dump <database>, {meaning}) "
            f"and keep {secret_files} with it."
        )
    raise BackupError(
        "This dashboard keeps its data in PostgreSQL: restore a pg_dump with pg_restore "
        f"(e.g. pg_restore --clean --if-exists --dbname=<database> dashboard.dump, {meaning}) "
        f"and copy back {secret_files}."
    )


def read_secrets(data_dir: Path) -> dict[str, bytes]:
    """The secret files ``data_dir`` holds, by name."""
    found = {}
    for name in SECRET_FILES:
        try:
            found[name] = (data_dir / name).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BackupError(f"Cannot read {data_dir / name}: {reason(exc)}.") from exc
    return found
