"""Logging that never reveals a secret carried in a URL path."""

import logging
import re

# Path segments that are secrets, whatever their value, and what replaces them: our
# webhook token, and the Z-API instance token that urllib3 logs with every request URL.
SECRET_PATHS = (
    (re.compile(r"(/webhooks/)[^/\s?#\"']+"), "<token>"),
    (re.compile(r"(/token/)[^/\s?#\"']+"), "<secret>"),
)
_MARKERS = ("/webhooks/", "/token/")


def redact(text: str) -> str:
    """Replace every secret path segment in ``text`` with its placeholder."""
    for pattern, placeholder in SECRET_PATHS:
        text = pattern.sub(rf"\g<1>{placeholder}", text)
    return text


class RedactSecrets(logging.Filter):
    """A logging filter that rewrites each record with its secret path segments redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message now, redacted, so no handler sees the original."""
        message = record.getMessage()
        if any(marker in message for marker in _MARKERS):
            record.msg, record.args = redact(message), None
        return True


def protect(logger: logging.Logger) -> None:
    """Attach the redacting filter to ``logger`` once."""
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())


def database_reason(error: Exception) -> str:
    """The first line of the driver's own message for a database error.

    SQLAlchemy's message repeats the statement and its parameters, which hold callback
    bodies and phone numbers; logs and console lines get only the driver's reason.
    """
    reason = str(getattr(error, "orig", error)).strip()
    return reason.splitlines()[0] if reason else type(error).__name__
