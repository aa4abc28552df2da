"""Which Z-API webhooks point at the dashboard: setting them all, and comparing them with /me.

No Flask here: the results carry untranslated msgids, which the settings page words.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..translatable import N_
from ..zapi import ME_URL_FIELDS, ZapiClient, ZapiError

NOTIFY_SENT_BY_ME = "notify-sent-by-me"
PRESENCE = "chat-presence"
# The kinds the message timeline is built from: sends and their failures, statuses,
# received messages (with those sent from the phone), and the instance going on and off line.
TIMELINE_KINDS = ("delivery", "message-status", "received", "connected", "disconnected")
# The order of "Save and apply": notify-sent-by-me right after the received URL, which
# Z-API needs set first; typing and presence, which are many and optional, last.
ORDER = (
    "delivery",
    "message-status",
    "received",
    NOTIFY_SENT_BY_ME,
    "connected",
    "disconnected",
    PRESENCE,
)
# The names Z-API's own panel uses, so an admin finds each one there.
LABELS = {
    "delivery": N_("on send"),
    "message-status": N_("message status"),
    "received": N_("on receive"),
    NOTIFY_SENT_BY_ME: N_("notify sent by me"),
    "connected": N_("on connect"),
    "disconnected": N_("on disconnect"),
    PRESENCE: N_("chat presence"),
}
# Failures to reach Z-API's host at all: every later call goes to the same host and would
# fail the same way, each after its own retries.
_HOST_FAILURES = frozenset({"dns", "unreachable", "tls"})
# A shown host is cut here, so an odd answer from /me cannot flood the page or the audit.
MAX_HOST_LENGTH = 100


@dataclass(frozen=True)
class Step:
    """One setting of "Save and apply": done, failed with ``error``, or ``skipped`` (a msgid)."""

    name: str
    error: ZapiError | None = None
    skipped: str | None = None

    @property
    def done(self) -> bool:
        """Whether Z-API confirmed this setting."""
        return self.error is None and self.skipped is None


@dataclass(frozen=True)
class Comparison:
    """Where Z-API sends each wanted kind: here, elsewhere (kind, host), or nowhere."""

    here: tuple[str, ...]
    elsewhere: tuple[tuple[str, str], ...]
    empty: tuple[str, ...]
    sent_by_me: bool

    @property
    def all_here(self) -> bool:
        """Whether every wanted kind comes here, messages sent from the phone included."""
        return not self.elsewhere and not self.empty and self.sent_by_me


def kinds(presence: bool) -> tuple[str, ...]:
    """The webhook kinds pointed at the dashboard; chat presence only when asked for."""
    return (*TIMELINE_KINDS, PRESENCE) if presence else TIMELINE_KINDS


def apply(client: ZapiClient, url: str, presence: bool) -> list[Step]:
    """Point every wanted webhook at ``url`` and turn on notify-sent-by-me; one Step each."""
    # Each webhook is set on its own in Z-API, so one refusal says nothing of the next:
    # all are tried, and one press shows the admin every problem at once rather than one
    # per try. Only when Z-API cannot be reached at all (its host, or two calls in a row
    # without an answer) is the rest left untried, since each would wait through its own
    # retries to fail the same way.
    wanted = {*kinds(presence), NOTIFY_SENT_BY_ME}
    steps: dict[str, Step] = {}
    unreachable, last_reason = False, None
    for name in (name for name in ORDER if name in wanted):
        if unreachable:
            steps[name] = Step(name, skipped=N_("Z-API could not be reached"))
        elif name == NOTIFY_SENT_BY_ME and not steps["received"].done:
            # Z-API refuses it without a received URL, and with someone else's URL there
            # it would send them the phone's own messages.
            steps[name] = Step(name, skipped=N_("it needs the on-receive webhook"))
        else:
            steps[name] = _set(client, name, url)
            error = steps[name].error
            reason = error.reason if error else None
            unreachable = reason in _HOST_FAILURES or reason == last_reason == "timeout"
            last_reason = reason
    return list(steps.values())


def compare(me: dict, url: str, presence: bool) -> Comparison:
    """How the URLs of /me (as ZapiClient.me gives them) compare with ``url``, kind by kind."""
    here, elsewhere, empty = [], [], []
    for kind in kinds(presence):
        configured = me.get(ME_URL_FIELDS[kind])
        if configured == url:
            here.append(kind)
        elif configured:
            elsewhere.append((kind, host_of(configured)))
        else:
            empty.append(kind)
    sent_by_me = me.get("receiveCallbackSentByMe") is True
    return Comparison(tuple(here), tuple(elsewhere), tuple(empty), sent_by_me)


def host_of(url: str) -> str:
    """Only the host (and port) of ``url``: its path and query may hold someone's token."""
    try:
        parts = urlsplit(url.strip())
        # hostname leaves out any user name and password before the "@".
        host, port = parts.hostname or "?", parts.port
    except ValueError:  # a bracketed host that is no IPv6 address, or a port out of range
        return "?"
    return (f"{host}:{port}" if port else host)[:MAX_HOST_LENGTH]


def _set(client: ZapiClient, name: str, url: str) -> Step:
    """Make one setting; a ZapiError becomes the Step's error."""
    try:
        if name == NOTIFY_SENT_BY_ME:
            client.notify_sent_by_me()
        else:
            client.set_webhook(name, url)
    except ZapiError as exc:
        return Step(name, error=exc)
    return Step(name)
