"""Keeping secrets out of logs and stored text: scrubbed by value, in every usual encoding."""

import base64
import logging
import re
import threading

# Path segments that are secrets, whatever their value, and what replaces them: our
# webhook token, and the Z-API instance token that urllib3 logs with every request URL.
# A slash may reach us JSON-escaped (\/) or URL-encoded (%2F) when an answer echoes a URL.
_SLASH = r"(?:/|\\/|%2[Ff])"
SECRET_PATHS = (
    (re.compile(rf"({_SLASH}webhooks{_SLASH})(?:(?!{_SLASH})[^\s?#\"'&<>\\])+"), "<token>"),
    (re.compile(rf"({_SLASH}token{_SLASH})(?:(?!{_SLASH})[^\s?#\"'&<>\\])+"), "<secret>"),
)
# Personal API tokens are only stored hashed, so they are found by their shape instead.
API_TOKEN = re.compile(r"\bzd_[A-Za-z0-9_-]{20,}")
REDACTED = "<secret>"
# Shorter values would replace ordinary words; every secret of the product is longer.
MIN_SECRET_LENGTH = 8
# The escapes JSON writers use for these characters besides \uXXXX.
_JSON_ESCAPES = {"/": r"\/", '"': r"\"", "\\": r"\\"}

# The app's own secrets (its data dir's keys and tokens), and those met since (Z-API's).
_app_secrets: set[str] = set()
_met_secrets: set[str] = set()
_known: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern | None = None


def keep_secret(*values: str | None) -> None:
    """Have ``scrub`` (and so every protected log) remove these values from now on."""
    with _lock:
        _met_secrets.update(_long_enough(values))
        _rebuild()


def keep_app_secrets(*values: str | None) -> None:
    """Scrub the secrets of the app being made, in place of an earlier app's in this process.

    A server process makes one app; a process that makes many (a test run) would otherwise
    scrub every log line against the secrets of all of them, ever slower.
    """
    with _lock:
        _app_secrets.clear()
        _app_secrets.update(_long_enough(values))
        _rebuild()


def _long_enough(values) -> set[str]:
    return {value for value in values if value and len(value) >= MIN_SECRET_LENGTH}


def _rebuild() -> None:
    global _known, _pattern
    known = _app_secrets | _met_secrets
    if known != _known:
        _known, _pattern = known, _alternatives(known)


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` without secret path segments, API tokens, known secrets or ``secrets``.

    Each secret is found plain, JSON-escaped (``\\/``, ``\\u0041``), URL-encoded (``%2F``
    or ``%2f``, even character by character) and in base64 (standard or URL-safe), since
    an error answer may echo it in any of these.
    """
    for pattern, placeholder in SECRET_PATHS:
        text = pattern.sub(rf"\g<1>{placeholder}", text)
    text = API_TOKEN.sub(REDACTED, text)
    extra = _long_enough(secrets)
    pattern = _alternatives(_known | extra) if extra - _known else _pattern
    return pattern.sub(REDACTED, text) if pattern else text


def scrub_bytes(data: bytes) -> bytes:
    """``data`` with ``scrub`` applied to its text; bytes that are no UTF-8 stay as they were."""
    # surrogateescape carries every undecodable byte through the text and back unchanged.
    return scrub(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def _alternatives(secrets: set[str]) -> re.Pattern | None:
    """One regular expression matching any of ``secrets`` in any of its encodings."""
    forms = [_encoded(secret) for secret in sorted(secrets, key=len, reverse=True)]
    forms += [re.escape(core) for secret in secrets for core in _base64_cores(secret)]
    return re.compile("|".join(forms)) if forms else None


def _encoded(secret: str) -> str:
    """A pattern for ``secret`` with each character plain, JSON-escaped or URL-encoded."""
    return "".join(_character(character) for character in secret)


def _character(character: str) -> str:
    options = [re.escape(character)]
    if character in _JSON_ESCAPES:
        options.append(re.escape(_JSON_ESCAPES[character]))
    if ord(character) < 0x10000:
        options.append(rf"\\u(?i:{ord(character):04x})")
    options.append("".join(rf"%(?i:{byte:02x})" for byte in character.encode("utf-8")))
    return f"(?:{'|'.join(options)})"


def _base64_cores(secret: str) -> list[str]:
    """The base64 characters that encode only ``secret``, wherever it starts in a text."""
    data = secret.encode("utf-8")
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data).decode("ascii")
        # Character i carries bits 6i to 6i+6; keep those that hold the secret's bits only.
        first, last = -(-8 * offset // 6), 8 * (offset + len(data)) // 6
        core = encoded[first:last]
        cores += [core, core.replace("+", "-").replace("/", "_")]
    return cores


class RedactSecrets(logging.Filter):
    """A logging filter that rewrites each record with its secrets scrubbed."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message (and any traceback) now, scrubbed, so no handler sees it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # the handler reports a broken record; nothing secret was rendered
        scrubbed = scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return True


def protect(logger: logging.Logger) -> None:
    """Attach the scrubbing filter to ``logger`` once."""
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())


def database_reason(error: Exception) -> str:
    """The first line of the driver's own message for a database error.

    SQLAlchemy's message repeats the statement and its parameters, which hold callback
    bodies and phone numbers; logs and console lines get only the driver's reason.
    """
    reason = str(getattr(error, "orig", error)).strip()
    return reason.splitlines()[0] if reason else type(error).__name__
