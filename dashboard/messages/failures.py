"""Failed sends decoded: what kind of failure Z-API reported, in plain words, and what to do.

Pure, no I/O. A DeliveryCallback that failed carries Z-API's free text in ``error`` and,
for a likely shadow ban, ``errorCode: "SHADOW_BAN"``. ``decode`` maps that pair to a
``Failure`` in one of a few stable categories, each with a short label, an explanation
and advice for the support agent. The texts are msgids: ``translated`` gives them in the
language of the current request, so this module can be used outside Flask.
"""

from dataclasses import dataclass
from typing import NamedTuple

from ..translatable import N_

SHADOW_BAN_CODE = "SHADOW_BAN"
OTHER = "other"


class FailureTexts(NamedTuple):
    """What a category of failure tells people: a label, what happened, what to do."""

    label: str
    explanation: str
    advice: str


@dataclass(frozen=True)
class Failure:
    """A failed send decoded: its category, that category's msgids, and Z-API's text as it came."""

    category: str
    label: str
    explanation: str
    advice: str
    error: str


# In display order (the order of categories()), "other" last.
_CATEGORIES: dict[str, FailureTexts] = {
    "shadow-ban": FailureTexts(
        # TRANSLATORS: "shadow ban" is Z-API's name for a temporary WhatsApp restriction.
        N_("Likely shadow ban"),
        N_(
            "Z-API suspects that WhatsApp is temporarily restricting the sending number (a "
            '"shadow ban"). It is Z-API\'s guess, not a confirmed block, and it concerns the '
            "sending number, not this customer."
        ),
        N_(
            "Slow down or stop bulk sending from this number for now, and keep to customers "
            "who write first. Such restrictions usually lift with time, with no need to "
            "reconnect the instance; see Z-API's tips on blocks and bans."
        ),
    ),
    "permission": FailureTexts(
        N_("Not allowed by WhatsApp"),
        N_(
            "WhatsApp did not let the sending number send this message to this chat: for "
            "example a group where it may not post, a kind of message that only works in "
            "groups, or a restriction on the sending number."
        ),
        N_(
            "Check that the number may write to this chat (in a group: that it is a member "
            "allowed to post). If many messages fail like this, WhatsApp may be restricting "
            "the sending number: slow down bulk sending and see Z-API's tips on blocks and bans."
        ),
    ),
    "invalid-number": FailureTexts(
        N_("Invalid number"),
        N_("The phone number is not valid or has no WhatsApp account."),
        N_(
            "Confirm the number with the customer (country code, area code and the ninth "
            "digit of a mobile) and that they use WhatsApp on it, then send again."
        ),
    ),
    "timeout": FailureTexts(
        N_("Timeout or connection error"),
        N_("The send did not finish: the connection with WhatsApp timed out or failed."),
        N_(
            "Check in the Z-API panel that the instance is connected and its phone is online, "
            "then send the message again."
        ),
    ),
    "media": FailureTexts(
        N_("Media problem"),
        N_(
            "The image, video, audio, document or sticker could not be used: its link is "
            "broken, leads to a web page instead of a file, or its format is not supported."
        ),
        N_(
            "Open the file's link in a browser to check that it downloads the file itself, "
            "fix the link or the format (a sticker must be an image), then send again."
        ),
    ),
    "request": FailureTexts(
        N_("Invalid request"),
        N_(
            "Z-API could not turn the request into a WhatsApp message: some of its data was "
            "missing or invalid."
        ),
        N_(
            "This comes from the system that sends the messages, not from the customer: pass "
            "the error text on to whoever maintains that integration."
        ),
    ),
    "time-limit": FailureTexts(
        N_("Past the 7-day limit"),
        N_(
            "WhatsApp allows editing a message, or commenting on it, only within 7 days of "
            "sending it."
        ),
        N_("Send a new message instead of changing or commenting on the old one."),
    ),
    "not-found": FailureTexts(
        N_("Original message not found"),
        N_(
            "The message this one refers to (a status being replied to, or a message being "
            "forwarded) was not found: it may have been deleted or expired."
        ),
        N_("Send the content as a new message instead."),
    ),
    "catalog": FailureTexts(
        N_("Catalog problem"),
        N_(
            "The product or catalog in the message was not found, or the catalog's phone was "
            "given as a LID (an internal WhatsApp id) instead of a phone number."
        ),
        N_(
            "Check that the product and the catalog exist in WhatsApp Business and that the "
            "catalog is named by its phone number, then send again."
        ),
    ),
    "order": FailureTexts(
        N_("Invalid order"),
        N_(
            "The order could not be sent or updated because some of its data was invalid, "
            "such as its currency code."
        ),
        N_(
            "Check the order's details (a currency code such as BRL or USD) in the system "
            "that sends it, then send again."
        ),
    ),
    "event": FailureTexts(
        N_("Event or poll problem"),
        N_(
            "An event or poll message could not be sent: a poll vote lacked its identifier, "
            "the event's date and time were invalid, or the event was not in a group."
        ),
        N_(
            "Check the event or poll in the system that sends it (events work only in "
            "groups), then send again."
        ),
    ),
    "channel-unsupported": FailureTexts(
        N_("Not available in channels"),
        N_(
            "WhatsApp channels (newsletters) do not take this kind of message or action, "
            "such as documents, buttons, locations, contacts, payments or calls."
        ),
        N_("Send it to a chat or a group instead, or post a plain text message to the channel."),
    ),
    "terms": FailureTexts(
        N_("Button terms not accepted"),
        N_(
            "Messages with buttons can be sent only once the buttons message terms are "
            "accepted in the Z-API panel."
        ),
        N_(
            "Ask whoever manages the Z-API account to accept the buttons message terms in "
            "the panel, then send again."
        ),
    ),
    "queue": FailureTexts(
        N_("Not queued"),
        N_(
            "Z-API received the message but an internal error kept it out of its sending "
            "queue, so it was never sent."
        ),
        N_("Send the message again. If it keeps happening, contact Z-API's support."),
    ),
    OTHER: FailureTexts(
        N_("Other error"),
        N_(
            "Z-API reported an error this dashboard does not know yet; its own words are "
            "shown as they came."
        ),
        N_(
            "Read Z-API's error text. If it is unclear, look it up in Z-API's documentation "
            "or ask its support."
        ),
    ),
}

# Z-API's texts, from its docs (en/webhooks/on-message-send-examples.mdx). "The set may
# grow", so an unknown text is "other", never an error. Two families are matched by their
# shape below rather than listed: "Unsupported sticker format: {content-type}" and
# "{something} not available to channels."
_KNOWN_TEXTS: dict[str, tuple[str, ...]] = {
    "shadow-ban": ("The message was not sent due to a likely shadow ban",),
    "permission": (
        "Did not have permission to send this message.",
        "Whatsapp rejected sending this message",
        "Whatsapp did not allow sending this message",
        "Does not have permission to send the message",
        "You can't message this group as you don't have permission",
        "This type of message can only be sent in groups",
    ),
    "terms": ("You must accept buttons message terms in panel to send this message.",),
    "timeout": ("Timeout on send message", "Error on send message"),
    "invalid-number": (
        "Phone number does not exist",
        "Message has not been sent because it got invalid phone number",
    ),
    "media": (
        "Message not send caused by invalid media url",
        "Got a 404 error while trying to send message",
        "The url informed is not a valid url in the media format, apparently it can be an html",
    ),
    "time-limit": (
        "Message has not been edited because it has been more than 7 days",
        "Comment message has not been sent because it has more than 7 days",
    ),
    "catalog": (
        "Product message has not been sent because provided product id was not found.",
        "Catalog message has not been sent because the catalog was not found.",
        "Product message has not been sent because provided catalog phone must not be a lid.",
    ),
    "order": (
        "Order has not been sent because it received invalid currency code",
        "Update order has not been sent because it received invalid request data.",
    ),
    "event": (
        "Newsletter poll vote was not sent because of missing identifier.",
        "Event edit message was not sent because the phone is not from a group.",
        "Event edit message was not sent because receive invalid date time.",
    ),
    "not-found": (
        "Status reply has not been sent because the status message was not found",
        "Message does not forward because it was not found",
    ),
    "request": (
        "Message has not been sent because an error occurred in the conversion",
        "Message has not been sent because it got invalid request params.",
    ),
    "queue": ("It was not possible to send message to queue due to request error.",),
}
_STICKER_PREFIX = "unsupported sticker format"
_CHANNEL_SUFFIX = " not available to channels"


def _normal(text: str) -> str:
    # Z-API writes "Whatsapp" and ends some texts with a period and others not; a fixed
    # spelling, a period or stray spaces should not turn a known text into "other".
    return " ".join(text.casefold().split()).rstrip(". ")


_CATEGORY_OF_TEXT = {
    _normal(text): category for category, texts in _KNOWN_TEXTS.items() for text in texts
}


def categories() -> tuple[str, ...]:
    """Every category code in display order, "other" last."""
    return tuple(_CATEGORIES)


def decode(error: str | None, error_code: str | None = None) -> Failure | None:
    """The failure a DeliveryCallback's ``error`` and ``errorCode`` report; None if it has none."""
    # Z-API marks a failure by the presence of ``error``, and the pages do the same.
    if not error:
        return None
    category = _category(error, error_code)
    return Failure(category, *_CATEGORIES[category], error=error)


def _category(error: str, error_code: str | None) -> str:
    if error_code and _normal(error_code) == _normal(SHADOW_BAN_CODE):
        return "shadow-ban"
    text = _normal(error)
    if text in _CATEGORY_OF_TEXT:
        return _CATEGORY_OF_TEXT[text]
    if text.startswith(_STICKER_PREFIX):
        return "media"
    if text.endswith(_CHANNEL_SUFFIX):
        return "channel-unsupported"
    return OTHER


def translated(category: str) -> FailureTexts:
    """A category's label, explanation and advice in the current request's language."""
    # Imported here so that decoding needs no Flask; translating happens in a request.
    from flask_babel import gettext

    return FailureTexts(*(gettext(text) for text in _CATEGORIES[category]))
