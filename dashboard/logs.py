"""Logging that never reveals the webhook token."""

import logging
import re

# The token is the path segment after /webhooks/; whatever it is, it is a secret.
_WEBHOOK_PATH = re.compile(r"(/webhooks/)[^/\s?\"']+")
REDACTED = "<token>"


def redact(text: str) -> str:
    """Replace every webhook token in ``text`` with a placeholder."""
    return _WEBHOOK_PATH.sub(rf"\g<1>{REDACTED}", text)


class RedactWebhookToken(logging.Filter):
    """A logging filter that rewrites each record with its webhook tokens redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message now, redacted, so no handler sees the original."""
        message = record.getMessage()
        if "/webhooks/" in message:
            record.msg, record.args = redact(message), None
        return True


def protect(logger: logging.Logger) -> None:
    """Attach the redacting filter to ``logger`` once."""
    if not any(isinstance(f, RedactWebhookToken) for f in logger.filters):
        logger.addFilter(RedactWebhookToken())


def database_reason(error: Exception) -> str:
    """The first line of the driver's own message for a database error.

    SQLAlchemy's message repeats the statement and its parameters, which hold callback
    bodies and phone numbers; logs and console lines get only the driver's reason.
    """
    reason = str(getattr(error, "orig", error)).strip()
    return reason.splitlines()[0] if reason else type(error).__name__
