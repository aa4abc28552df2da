"""Configuration: defaults, ``DASHBOARD_*`` variables and secrets kept in the data dir."""

import contextlib
import difflib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from ..live_io import NoReaderThread
from . import values

# 22 URL-safe characters carry 132 bits; fewer would make the webhook URL guessable.
MIN_WEBHOOK_TOKEN_LENGTH = 22
# A session-signing key shorter than this could be guessed offline from one cookie.
MIN_SECRET_KEY_LENGTH = 16
PREFIX = "DASHBOARD_"
# Values never repeated in an error message.
SECRET_KEYS = {"SECRET_KEY", "WEBHOOK_TOKEN"}
# About a century: a larger count of days overflows Python's dates.
MAX_RETENTION_DAYS = 36_500

# What an operator may set, as DASHBOARD_<key>; each reader checks a value's type and range.
SETTINGS: dict[str, values.Reader] = {
    "DATA_DIR": values.absolute_path("/var/lib/zapi-dashboard"),
    "DATABASE_URL": values.database_url,
    "SECRET_KEY": values.secret(MIN_SECRET_KEY_LENGTH, r"\S", "anything but spaces"),
    "WEBHOOK_TOKEN": values.secret(
        MIN_WEBHOOK_TOKEN_LENGTH, r"[A-Za-z0-9_-]", "A-Z a-z 0-9 - _, as it is part of a URL"
    ),
    "PUBLIC_URL": values.web_address(("https",), "https://dashboard.example.com", False),
    "ZAPI_BASE_URL": values.web_address(("https", "http"), "https://api.z-api.io", True),
    "ZAPI_TIMEOUT_SECONDS": values.seconds(300, "how long one Z-API call may wait"),
    "WRITE_TIMEOUT_SECONDS": values.seconds(300, "how long a webhook waits for its commit"),
    "SQLITE_SYNCHRONOUS": values.one_of("NORMAL", "FULL"),
    "TRUSTED_PROXIES": values.whole_number(0, 5, "how many reverse proxies are in front"),
    "SOCKETS_PER_WORKER": values.whole_number(1, 10_000, "live feeds one worker holds"),
    "RETENTION_DAYS": values.whole_number(
        0, MAX_RETENTION_DAYS, "days of callbacks to keep; 0 keeps every callback"
    ),
    "PRUNE_CHECK_SECONDS": values.seconds(86_400, "how often a worker looks for a due prune"),
    "REQUEST_SECONDS": values.seconds(300, "how long a client may take to send one request"),
}

DEFAULTS = {
    "ZAPI_BASE_URL": "https://api.z-api.io",
    # How long one Z-API call may take to answer; each call is tried up to 3 times.
    "ZAPI_TIMEOUT_SECONDS": 15.0,
    "PUBLIC_URL": None,
    "SQLITE_SYNCHRONOUS": "NORMAL",
    "AUTO_MIGRATE": True,
    # Z-API callbacks are a few hundred bytes; anything near this limit is not one. No
    # request body larger than this is accepted anywhere (see dashboard/server/intake.py).
    "MAX_WEBHOOK_BODY": 64 * 1024,
    # A request not sent whole within this many seconds of its first wait is answered 408;
    # until then it waits in the worker's poller, holding no thread.
    "REQUEST_SECONDS": 30.0,
    # How long a webhook request waits for its batch to commit before answering 503.
    "WRITE_TIMEOUT_SECONDS": 30.0,
    # How many reverse proxies in front of us set X-Forwarded-*; 0 trusts none.
    "TRUSTED_PROXIES": 0,
    # An open live feed holds no thread, only its socket and a few kilobytes.
    "SOCKETS_PER_WORKER": 1000,
    # One thread of each process reads, pings and closes every live socket
    # (dashboard/live_io.py): simple-websocket starts no reader thread of its own.
    "SOCK_SERVER_OPTIONS": {"thread_class": NoReaderThread},
    # CSRF tokens last as long as the session, so a page left open all day still submits.
    "WTF_CSRF_TIME_LIMIT": None,
    # Callbacks older than this many days are pruned once a day; 0 keeps every callback.
    "RETENTION_DAYS": 90,
    # Internal: how often each server process checks whether the day's prune is due.
    "PRUNE_CHECK_SECONDS": 3600.0,
}


class ConfigError(Exception):
    """A setting that stops the dashboard from starting, with a message for the operator."""


def load(app: Flask, test_config: dict | None) -> None:
    """Fill ``app.config`` from defaults, the environment, test overrides and the data dir."""
    app.config.from_mapping(DEFAULTS)
    _refuse_unknown_variables()
    # Raw text: each setting's own reader decides what its value means.
    app.config.from_prefixed_env(PREFIX.rstrip("_"), loads=str)
    if test_config:
        app.config.from_mapping(test_config)
    for key, read in SETTINGS.items():
        if app.config.get(key) is not None:
            app.config[key] = _checked(key, read, app.config[key])

    data_dir = Path(app.config.get("DATA_DIR") or app.instance_path)
    _ensure_writable_dir(data_dir)
    app.config["DATA_DIR"] = str(data_dir)
    app.config.setdefault("DATABASE_URL", f"sqlite:///{data_dir / 'dashboard.sqlite3'}")

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = read_or_create_secret(data_dir / "secret_key")
    if not app.config.get("WEBHOOK_TOKEN"):
        app.config["WEBHOOK_TOKEN"] = read_or_create_secret(data_dir / "webhook_token")
    # Encrypts the Z-API tokens at rest; kept only in the data dir, never in the database.
    app.config["SETTINGS_KEY"] = read_or_create_secret(data_dir / "settings_key", _new_settings_key)


def _refuse_unknown_variables() -> None:
    """A misspelt variable would otherwise be ignored without a word."""
    for name in sorted(os.environ):
        if name.startswith(PREFIX) and name.removeprefix(PREFIX) not in SETTINGS:
            known = [PREFIX + key for key in SETTINGS]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"{name} is not a zapi-dashboard setting; {hint}"
                "the settings are listed under Configuration in the README."
            )


def _checked(key: str, read: values.Reader, value: object) -> object:
    try:
        return read(value)
    except values.Refused as refused:
        text = str(value)
        shown = repr(text if len(text) <= 60 else f"{text[:57]}...")
        if key in SECRET_KEYS:
            shown = f"a value of {len(text)} characters"  # never echo a secret
        raise ConfigError(f"{PREFIX}{key} must be {refused.accepted}, not {shown}.") from None


def read_or_create_secret(
    path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)
) -> str:
    """Return the secret stored at ``path``, creating it with ``make`` (mode 0600) on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    # Write a private temporary file, then hard-link it into place: the link fails if
    # another worker won the race, and nobody ever reads a half-written secret.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(make() + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path.read_text().strip()


def _ensure_writable_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"Cannot create the data directory {path}: {exc.strerror}.") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            f"The data directory {path} is not writable by this user; "
            "fix its permissions or set DASHBOARD_DATA_DIR."
        )


def _new_settings_key() -> str:
    # Only a first start makes one: no need to load cryptography on every start.
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
