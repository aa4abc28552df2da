"""A sent message's state, folded from its callbacks in any order (pure, no I/O).

Each callback about a message we sent is evidence of one step: Z-API handed it to
WhatsApp (``queued``), WhatsApp's servers took it (``sent``), it reached the customer's
phone (``received``), was read (``read``) or played (``played``), or the send ``failed``.
A message keeps, per step, the time of its first evidence and how many callbacks showed
it. Merging is a minimum, a sum or a union per field, so the same callbacks give the
same message whatever order they arrive in, and a late SENT after READ changes nothing.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

QUEUED, SENT, RECEIVED, READ, PLAYED, FAILED = (
    "queued",
    "sent",
    "received",
    "read",
    "played",
    "failed",
)
# The road of a message that goes well, in order; "failed" stands beside it.
PROGRESS = (QUEUED, SENT, RECEIVED, READ, PLAYED)
STATES = (*PROGRESS, FAILED)
# Only evidence that the customer's phone has the message outranks a failure.
RECEIPTS = (RECEIVED, READ, PLAYED)
# MessageStatusCallback's words for the steps; READ_BY_ME is about a message we got.
STATUS_STEPS = {"SENT": SENT, "RECEIVED": RECEIVED, "READ": READ, "PLAYED": PLAYED}

# WhatsApp's API and Z-API are younger than this: an earlier momment is no real time.
EARLIEST_PLAUSIBLE = datetime(2015, 1, 1, tzinfo=UTC)
# Clocks drift; a momment further ahead of our own clock than this is no real time either.
CLOCK_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class Evidence:
    """One callback's word about one message: which step, when, and what it carried."""

    instance_id: str
    message_id: str
    step: str
    at: datetime
    delivery_id: int
    zaap_id: str | None = None
    phone: str | None = None
    content: str | None = None
    error: str | None = None
    error_code: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The message this is about: its instance and WhatsApp message id."""
        return self.instance_id, self.message_id


@dataclass(frozen=True)
class Step:
    """When a step was first seen, and by how many callbacks."""

    at: datetime
    count: int = 1


@dataclass(frozen=True)
class MessageFacts:
    """Everything the callbacks so far say about one message."""

    instance_id: str
    message_id: str
    steps: dict[str, Step] = field(default_factory=dict)
    zaap_id: str | None = None
    phone: str | None = None
    content: str | None = None
    error: str | None = None
    error_code: str | None = None
    first_delivery_id: int | None = None
    last_delivery_id: int | None = None

    @property
    def state(self) -> str:
        """The furthest step; a failure gives way only to evidence of receipt."""
        if FAILED in self.steps and not any(state in self.steps for state in RECEIPTS):
            return FAILED
        reached = [state for state in PROGRESS if state in self.steps]
        return reached[-1] if reached else QUEUED

    @property
    def first_at(self) -> datetime:
        """The time of the earliest evidence, whichever step it showed."""
        return min(step.at for step in self.steps.values())

    def with_evidence(self, evidence: Evidence) -> "MessageFacts":
        """This message with one more callback's evidence folded in."""
        step = self.steps.get(evidence.step)
        steps = dict(self.steps)
        steps[evidence.step] = (
            Step(evidence.at) if step is None else Step(min(step.at, evidence.at), step.count + 1)
        )
        error, error_code = self.error, self.error_code
        if evidence.step == FAILED and (step is None or self._fails_earlier(evidence, step)):
            error, error_code = evidence.error, evidence.error_code
        # Built whole rather than with dataclasses.replace: every stored callback runs this.
        return MessageFacts(
            self.instance_id,
            self.message_id,
            steps,
            zaap_id=_least(self.zaap_id, evidence.zaap_id),
            phone=_least(self.phone, evidence.phone, key=_phone_preference),
            content=_least(self.content, evidence.content),
            error=error,
            error_code=error_code,
            first_delivery_id=_least(self.first_delivery_id, evidence.delivery_id),
            last_delivery_id=max(self.last_delivery_id or 0, evidence.delivery_id),
        )

    def _fails_earlier(self, evidence: Evidence, failure: Step) -> bool:
        # The first failure tells why; ties go by text, so arrival order never decides.
        ours = (failure.at, self.error or "", self.error_code or "")
        return (evidence.at, evidence.error or "", evidence.error_code or "") < ours


def fold(
    evidence: list[Evidence], known: dict[tuple[str, str], MessageFacts] | None = None
) -> dict[tuple[str, str], MessageFacts]:
    """The messages ``evidence`` is about, each folded onto its ``known`` state if any."""
    messages: dict[tuple[str, str], MessageFacts] = {}
    for item in evidence:
        current = messages.get(item.key) or (known or {}).get(item.key) or MessageFacts(*item.key)
        messages[item.key] = current.with_evidence(item)
    return messages


def evidence_time(momment: int | None, received_at: datetime) -> datetime:
    """When a callback says its event happened: its momment when plausible, else arrival."""
    return plausible_time(momment, received_at) or received_at


def plausible_time(momment: int | None, received_at: datetime) -> datetime | None:
    """A callback's momment as a time, or None when it cannot be a real one (or is missing)."""
    if momment is None:
        return None
    try:
        moment = datetime.fromtimestamp(momment / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment if EARLIEST_PLAUSIBLE <= moment <= received_at + CLOCK_SLACK else None


def _least(current, new, key=None):
    if current is None or new is None:
        return new if current is None else current
    return min(current, new, key=key)


def _phone_preference(phone: str) -> tuple[bool, str]:
    # A number reads better than WhatsApp's LID of it, whichever callback came first.
    return phone.endswith("@lid"), phone
