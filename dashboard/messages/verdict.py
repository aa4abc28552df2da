"""The answer to "did the customer get it?", in one sentence, and a message's public JSON."""

from datetime import datetime

from flask_babel import gettext as _

from ..models import Delivery, Message, iso_utc
from ..phones import display
from . import failures, states, timeline


def _moment(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def verdict(message: Message, replies: list[Delivery]) -> str:
    """One sentence for a support agent: what the callbacks prove about this message."""
    state = message.state
    if state == states.FAILED:
        sentence = _("Failed: %(reason)s.", reason=failure_of(message)["label"])
    elif state == states.PLAYED:
        sentence = _("Played at %(at)s.", at=_moment(message.played_at))
    elif state == states.READ:
        sentence = _("Read at %(at)s.", at=_moment(message.read_at))
    elif state == states.RECEIVED:
        sentence = _(
            "On the customer's phone since %(at)s, not read yet (customers can turn read "
            "receipts off).",
            at=_moment(message.received_at),
        )
    elif state == states.SENT:
        sentence = _(
            "Accepted by WhatsApp at %(at)s, not on the customer's phone yet.",
            at=_moment(message.sent_at),
        )
    else:
        sentence = _(
            "Handed to WhatsApp at %(at)s, not on the phone yet: a delivery callback alone "
            "does not mean the customer received it.",
            at=_moment(message.queued_at or message.first_at),
        )
    if replies:
        sentence += " " + _("The customer replied at %(at)s.", at=_moment(replies[0].received_at))
    return sentence


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
