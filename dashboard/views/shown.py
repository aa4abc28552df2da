"""How pages show a stored callback: its body, and lengths of time such as Z-API's lag."""

from datetime import timedelta

from flask_babel import format_decimal, format_timedelta
from flask_babel import gettext as _

from .. import payloads

# Below this a length of time reads best in seconds with a decimal ("1.2 s later").
SECONDS_SHOWN_EXACTLY = 60
# A body of 64 KiB, indented, stays well below this; a page past it only gets slow.
BODY_SHOWN_CHARACTERS = 200_000


def shown_body(raw: str) -> payloads.Shown:
    """A stored body as the pages and the API show it, its depth note translated."""
    note = _("(nested more than %(limit)d levels deep: not shown)", limit=payloads.MAX_DEPTH)
    return payloads.shown(raw, note)


def lag_words(lag: timedelta) -> str:
    """How long after Z-API's stamp a callback reached us, in words."""
    # Clocks differ: our receipt can come out before Z-API's stamp, which is worth saying.
    length = duration(abs(lag))
    if lag < timedelta(0):
        return _("%(duration)s before Z-API's stamp", duration=length)
    return _("%(duration)s later", duration=length)


def duration(length: timedelta) -> str:
    """A length of time in the reader's language: seconds exactly, else rounded."""
    seconds = length.total_seconds()
    if seconds < SECONDS_SHOWN_EXACTLY:
        return _("%(seconds)s s", seconds=format_decimal(round(seconds, 1), format="0.0"))
    return format_timedelta(length, threshold=1, add_direction=False)
