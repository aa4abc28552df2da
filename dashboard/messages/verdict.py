"""The answer to "did the customer get it?", in one sentence, and a message's public JSON."""

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from flask_babel import gettext as _
from markupsafe import Markup, escape

from ..i18n import time_element
from ..models import Delivery, Message, iso_utc
from ..phones import display
from . import failures, states, timeline

# Plain text for the API, Markup for a page: what the sentences are written as.
Text = TypeVar("Text", bound=str)

# One sentence of a verdict: its translated words, and what fills their placeholders. A
# time stays a datetime until the verdict is written, as text or for a page.
Sentence = tuple[str, dict[str, str | datetime]]


def verdict(message: Message, replies: list[Delivery]) -> str:
    """One sentence for a support agent, as plain text with its times in UTC (the JSON API's)."""
    return _written(_sentences(message, replies), str, _utc_text)


def verdict_html(message: Message, replies: list[Delivery]) -> Markup:
    """The same sentence for a page: each time a ``<time>`` in the reader's zone, words escaped."""
    return _written(_sentences(message, replies), escape, time_element)


def _utc_text(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _written(
    sentences: list[Sentence], words: Callable[[str], Text], moment: Callable[[datetime], str]
) -> Text:
    # ``words`` makes each translated sentence plain text or escaped HTML; on a page, its
    # ``%`` then escapes every value that is no <time>, Z-API's (anyone's) error text included.
    return words(" ").join(
        words(sentence)
        % {
            name: moment(value) if isinstance(value, datetime) else value
            for name, value in values.items()
        }
        for sentence, values in sentences
    )


def _sentences(message: Message, replies: list[Delivery]) -> list[Sentence]:
    said = [_state_sentence(message)]
    # The customer's answer is evidence too: they had the message by then.
    if replies:
        said.append((_("The customer replied at %(at)s."), {"at": replies[0].received_at}))
    return said


def _state_sentence(message: Message) -> Sentence:
    # What the callbacks prove about this message.
    state = message.state
    if state == states.FAILED:
        return _("Failed: %(reason)s."), {"reason": failure_of(message)["label"]}
    if state == states.PLAYED:
        return _("Played at %(at)s."), {"at": message.played_at}
    if state == states.READ:
        return _("Read at %(at)s."), {"at": message.read_at}
    if state == states.RECEIVED:
        return _(
            "On the customer's phone since %(at)s, not read yet (customers can turn read "
            "receipts off)."
        ), {"at": message.received_at}
    if state == states.SENT:
        return _("Accepted by WhatsApp at %(at)s, not on the customer's phone yet."), {
            "at": message.sent_at
        }
    return _(
        "Handed to WhatsApp at %(at)s, not on the phone yet: a delivery callback alone "
        "does not mean the customer received it."
    ), {"at": message.queued_at or message.first_at}


def caveat(message: Message) -> str | None:
    """What the verdict cannot prove for this state, said so that no one reads too much into it."""
    if message.state == states.QUEUED:
        return _(
            "Only Z-API's delivery callback has come: it says the message was handed to "
            "WhatsApp, not that the customer received it."
        )
    if message.state == states.RECEIVED:
        return _(
            "Customers can turn read receipts off, so “not read” may mean they read it "
            "without WhatsApp telling us."
        )
    return None


def last_at(message: Message) -> datetime:
    """The time of the latest step with evidence: when the message last had news."""
    return max(
        (at for state in states.STATES if (at := getattr(message, f"{state}_at")) is not None),
        default=message.first_at,
    )


def failure_of(message: Message) -> dict | None:
    """The decoded failure of ``message`` (category, label, explanation, advice), or None."""
    decoded = failures.decode(message.error, message.error_code)
    if decoded is None:
        return None
    texts = failures.translated(decoded.category)
    label = decoded.error if decoded.category == failures.OTHER else texts.label
    return {
        "category": decoded.category,
        "label": label,
        "explanation": texts.explanation,
        "advice": texts.advice,
    }


def summary_json(message: Message) -> dict:
    """The fields every JSON shape of a message shares: who, which, where it stands, why not."""
    return {
        "id": message.id,
        "instanceId": message.instance_id or None,
        "messageId": message.message_id,
        "zaapId": message.zaap_id,
        "phone": message.phone,
        "phoneDisplay": display(message.phone),
        "state": message.state,
        "content": message.content,
        "error": message.error,
        "errorCode": message.error_code,
        "failureCategory": message.failure_category,
    }


def to_json(message: Message, callback_ids: list[int], replies: list[Delivery]) -> dict:
    """A message in the public JSON shape: its steps, failure, verdict and evidence."""
    steps = [
        {"state": step.state, "at": iso_utc(step.at), "count": step.count}
        for step in timeline.steps(message)
    ]
    return {
        **summary_json(message),
        "steps": steps,
        "failure": failure_of(message),
        "verdict": verdict(message, replies),
        "replies": [
            {"id": reply.id, "receivedAt": iso_utc(reply.received_at)} for reply in replies
        ],
        "callbacks": callback_ids,
    }
