"""Readers of setting values: each turns a raw value into a checked one, or says what it takes.

A value comes as text from a ``DASHBOARD_*`` variable, or already typed from a test's
configuration; every reader accepts both. A reader that refuses a value raises ``Refused``
carrying the accepted values in words, which the loader turns into the operator's one line.
"""

import importlib.util
import math
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

Reader = Callable[[object], object]

# URL schemes people paste for PostgreSQL, all read by the one driver we ship an extra for.
POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg"}


class Refused(ValueError):
    """A value a reader does not accept; ``accepted`` says, in words, what it takes."""

    def __init__(self, accepted: str):
        super().__init__(accepted)
        self.accepted = accepted


def whole_number(low: int, high: int, meaning: str) -> Reader:
    """Integers from ``low`` to ``high``, given as a number or as digits."""
    accepted = f"a whole number from {low} to {high} ({meaning})"

    def read(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,20}\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Refused(accepted)
        return value

    return read


def seconds(high: float, meaning: str) -> Reader:
    """A duration in seconds, above 0 and at most ``high``."""
    accepted = f"a number of seconds above 0 and at most {high:g} ({meaning})"

    def read(value: object) -> float:
        if isinstance(value, bool):
            raise Refused(accepted)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise Refused(accepted) from None
        if not math.isfinite(number) or not 0 < number <= high:
            raise Refused(accepted)
        return number

    return read


def one_of(*choices: str) -> Reader:
    """One word out of ``choices``, in any case; returned as written in ``choices``."""
    accepted = " or ".join(choices)

    def read(value: object) -> str:
        for choice in choices:
            if isinstance(value, str) and value.strip().upper() == choice.upper():
                return choice
        raise Refused(accepted)

    return read


def secret(min_length: int, pattern: str, characters: str) -> Reader:
    """A secret of at least ``min_length`` characters, each matching ``pattern``."""
    accepted = f"at least {min_length} characters of {characters} (unset it to have one generated)"
    whole = re.compile(f"{pattern}{{{min_length},4096}}")

    def read(value: object) -> str:
        if not isinstance(value, str) or not whole.fullmatch(value):
            raise Refused(accepted)
        return value

    return read


def absolute_path(example: str) -> Reader:
    """A folder given as an absolute path, so no start depends on the working directory."""
    accepted = f"an absolute path, like {example}"

    def read(value: object) -> str:
        text = str(value).strip() if isinstance(value, str | Path) else ""
        if not text.startswith("/") or "\0" in text:
            raise Refused(accepted)
        return str(Path(text))

    return read


def web_address(schemes: tuple[str, ...], example: str, allow_path: bool) -> Reader:
    """A base URL with one of ``schemes``, a host and no user, query or fragment."""
    path_words = "" if allow_path else " and no path"
    accepted = f"a {' or '.join(schemes)} address with a host name{path_words}, like {example}"

    def read(value: object) -> str:
        text = value.strip() if isinstance(value, str) else ""
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - reading it checks the port is a number in range
        except ValueError:
            raise Refused(accepted) from None
        if (
            parts.scheme not in schemes
            or not parts.hostname
            or parts.username is not None
            or parts.query
            or parts.fragment
            or "?" in text
            or "#" in text
            or (parts.path.strip("/") and not allow_path)
            or not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", parts.netloc)
        ):
            raise Refused(accepted)
        return text.rstrip("/")

    return read


def database_url(value: object) -> str:
    """A SQLite file by absolute path, or a PostgreSQL URL whose driver is installed."""
    accepted = (
        "sqlite:////absolute/path/dashboard.sqlite3 (four slashes) or "
        "postgresql+psycopg://user:password@host/database"
    )
    try:
        url = make_url(value.strip()) if isinstance(value, str) else None
    except ArgumentError:
        url = None
    if url is None:
        raise Refused(accepted)
    if url.get_backend_name() == "sqlite":
        return _sqlite_url(url, accepted)
    if url.drivername in POSTGRES_SCHEMES:
        if importlib.util.find_spec("psycopg") is None:
            raise Refused(
                "a PostgreSQL URL with its driver installed: "
                "run pip install 'zapi-dashboard[postgres]'"
            )
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise Refused(accepted)


def _sqlite_url(url: URL, accepted: str) -> str:
    if not url.database or not url.database.startswith("/"):
        raise Refused(accepted)
    return url.render_as_string(hide_password=False)
