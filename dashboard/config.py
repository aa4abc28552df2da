"""Configuration: defaults, ``DASHBOARD_*`` variables and secrets kept in the data dir."""

import contextlib
import functools
import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from flask import Flask

# 22 URL-safe characters carry 132 bits; fewer would make the webhook URL guessable.
MIN_WEBHOOK_TOKEN_LENGTH = 22
WEBHOOK_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
SQLITE_SYNCHRONOUS_MODES = ("NORMAL", "FULL")

DEFAULTS = {
    "ZAPI_BASE_URL": "https://api.z-api.io",
    # How long one Z-API call may take to answer; each call is tried up to 3 times.
    "ZAPI_TIMEOUT_SECONDS": 15.0,
    "PUBLIC_URL": None,
    "SQLITE_SYNCHRONOUS": "NORMAL",
    "AUTO_MIGRATE": True,
    # Z-API callbacks are a few hundred bytes; anything near this limit is not one.
    "MAX_WEBHOOK_BODY": 64 * 1024,
    # How long a webhook request waits for its batch to commit before answering 503.
    "WRITE_TIMEOUT_SECONDS": 30.0,
    # How many reverse proxies in front of us set X-Forwarded-*; 0 trusts none.
    "TRUSTED_PROXIES": 0,
    # Each open live feed holds one thread; the rest stay free for Z-API's webhook calls.
    "SOCKETS_PER_WORKER": 64,
    # Ping every open socket; one that stops answering is closed and its thread freed.
    "SOCK_SERVER_OPTIONS": {
        "ping_interval": 25,
        "max_message_size": 4096,
        # A socket's reader thread must not keep a stopping worker alive until the next ping.
        "thread_class": functools.partial(threading.Thread, daemon=True),
    },
    # CSRF tokens last as long as the session, so a page left open all day still submits.
    "WTF_CSRF_TIME_LIMIT": None,
    # Callbacks older than this many days are pruned once a day; 0 keeps every callback.
    "RETENTION_DAYS": 90,
    # Internal: how often each server process checks whether the day's prune is due.
    "PRUNE_CHECK_SECONDS": 3600.0,
}

# Values that must stay strings even when from_prefixed_env would read them as JSON.
STRING_KEYS = ("SECRET_KEY", "WEBHOOK_TOKEN", "DATA_DIR", "DATABASE_URL", "PUBLIC_URL")


class ConfigError(Exception):
    """A setting that stops the dashboard from starting, with a message for the operator."""


def load(app: Flask, test_config: dict | None) -> None:
    """Fill ``app.config`` from defaults, the environment, test overrides and the data dir."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("DASHBOARD")
    if test_config:
        app.config.from_mapping(test_config)
    for key in STRING_KEYS:
        if app.config.get(key) is not None:
            app.config[key] = str(app.config[key])

    data_dir = Path(app.config.get("DATA_DIR") or app.instance_path)
    _ensure_writable_dir(data_dir)
    app.config["DATA_DIR"] = str(data_dir)
    app.config.setdefault("DATABASE_URL", f"sqlite:///{data_dir / 'dashboard.sqlite3'}")

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = read_or_create_secret(data_dir / "secret_key")
    if not app.config.get("WEBHOOK_TOKEN"):
        app.config["WEBHOOK_TOKEN"] = read_or_create_secret(data_dir / "webhook_token")
    _check_webhook_token(app.config["WEBHOOK_TOKEN"])
    # Encrypts the Z-API tokens at rest; kept only in the data dir, never in the database.
    app.config["SETTINGS_KEY"] = read_or_create_secret(data_dir / "settings_key", _new_settings_key)

    mode = str(app.config["SQLITE_SYNCHRONOUS"]).upper()
    if mode not in SQLITE_SYNCHRONOUS_MODES:
        raise ConfigError(f"DASHBOARD_SQLITE_SYNCHRONOUS must be NORMAL or FULL, not {mode!r}.")
    app.config["SQLITE_SYNCHRONOUS"] = mode
    app.config["RETENTION_DAYS"] = _retention_days(app.config["RETENTION_DAYS"])
    app.config["PRUNE_CHECK_SECONDS"] = _check_seconds(app.config["PRUNE_CHECK_SECONDS"])


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


def _retention_days(value) -> int:
    # From the environment a number arrives parsed as JSON; anything else stays a string.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            "DASHBOARD_RETENTION_DAYS must be a whole number of days, 0 or more "
            f"(0 keeps every callback), not {value!r}."
        )
    return value


def _check_seconds(value) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if isinstance(value, bool) or not 0 < seconds < float("inf"):
        raise ConfigError(f"DASHBOARD_PRUNE_CHECK_SECONDS must be a number above 0, not {value!r}.")
    return seconds


def _check_webhook_token(token: str) -> None:
    if len(token) < MIN_WEBHOOK_TOKEN_LENGTH:
        raise ConfigError(
            f"DASHBOARD_WEBHOOK_TOKEN is {len(token)} characters long; it must be at least "
            f"{MIN_WEBHOOK_TOKEN_LENGTH} (128 bits). Unset it to have one generated, or use "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`."
        )
    if not WEBHOOK_TOKEN_PATTERN.fullmatch(token):
        raise ConfigError(
            "DASHBOARD_WEBHOOK_TOKEN may hold only letters, digits, '-' and '_', "
            "because it is part of a URL."
        )
