"""Z-API's statuses, our message states and failure categories in the reader's words.

Templates show them through the filters ``status_label``, ``state_label`` and
``category_label``; the live feed gets the same words from ``status_labels()``, rendered
into its page. Anything not listed here (Z-API may send statuses it never documented) is
shown as it came.
"""

from flask import Flask
from flask_babel import pgettext

from .messages import failures, states


def status_labels() -> dict[str, str]:
    """Every status Z-API documents, mapped to its word in the current request's language."""
    # The context keeps these apart from column headers such as "Received" (received at).
    return {
        # MessageStatusCallback, and ReceivedCallback's documented statuses.
        "PENDING": pgettext("status", "Pending"),
        "SENT": pgettext("status", "Sent"),
        "RECEIVED": pgettext("status", "Received"),
        "DELIVERY_ACK": pgettext("status", "Delivered"),
        "READ": pgettext("status", "Read"),
        "READ_BY_ME": pgettext("status", "Read by me"),
        "PLAYED": pgettext("status", "Played"),
        "MESSAGE_RECEIVED": pgettext("status", "Message received"),
        # PresenceChatCallback: what the customer is doing in the chat.
        "AVAILABLE": pgettext("status", "Online"),
        "UNAVAILABLE": pgettext("status", "Offline"),
        "COMPOSING": pgettext("status", "Typing"),
        "RECORDING": pgettext("status", "Recording audio"),
        "PAUSED": pgettext("status", "Stopped typing"),
    }


def status_label(status: str | None) -> str:
    """A callback's ``status`` in the reader's words; an unknown one as it came."""
    return status_labels().get(status, status) if status else ""


def state_label(state: str | None) -> str:
    """A message's state (queued, sent, received, read, played, failed) in the reader's words."""
    words = {
        states.QUEUED: pgettext("status", "Queued"),
        states.SENT: pgettext("status", "Sent"),
        # On the customer's phone: WhatsApp's two grey ticks, "delivered" to its users.
        states.RECEIVED: pgettext("status", "Delivered"),
        states.READ: pgettext("status", "Read"),
        states.PLAYED: pgettext("status", "Played"),
        states.FAILED: pgettext("status", "Failed"),
    }
    return words.get(state, state) if state else ""


def category_label(category: str | None) -> str:
    """A failure category's short label in the reader's words; an unknown code as it came."""
    if category not in failures.categories():
        return category or ""
    return failures.translated(category).label


def init(app: Flask) -> None:
    """Give every template the label filters, and the live feed its status words."""
    app.add_template_filter(status_label, "status_label")
    app.add_template_filter(state_label, "state_label")
    app.add_template_filter(category_label, "category_label")
    app.jinja_env.globals.update(status_labels=status_labels)
