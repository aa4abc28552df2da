"""Read a search from query-string parameters: one reader for the page, the API and exports."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from .deliveries import Filters
from .messages import failures
from .messages.queries import MessageFilters
from .messages.states import STATES
from .models import MAX_ROW_ID
from .phones import PhoneQuery, PhoneQueryError, is_chat_id, parse_query
from .translatable import N_

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# The largest row id: the id column is a 32-bit INTEGER on PostgreSQL, which refuses to
# compare it with anything larger.
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# An unescaped "+" in a query string arrives as a space: "...T14:30:00 03:00".
_OFFSET_AS_SPACE = re.compile(r" (\d{2}:?\d{2})$")
# A WhatsApp messageId or Z-API zaapId as pasted: one word, at least ten characters.
_ID = re.compile(r"[A-Za-z0-9_.:-]{10,255}")
_DIGIT = re.compile(r"[0-9]")
# No phone number has more digits than this (ITU-T E.164).
MAX_DIGITS = 15


class BadParameter(ValueError):
    """A query parameter we cannot use; ``message`` (an untranslated msgid) says why."""

    def __init__(self, name: str, message: str, **params):
        super().__init__(f"{name}: {message % params}")
        self.name = name
        self.message = message
        self.params = params


@dataclass(frozen=True)
class Search:
    """A parsed search: what to match and which page of it."""

    filters: Filters = field(default_factory=Filters)
    limit: int = DEFAULT_LIMIT
    before: int | None = None
    after: int | None = None


@dataclass(frozen=True)
class MessageSearch:
    """A parsed message search: what to match and which page of it."""

    filters: MessageFilters = field(default_factory=MessageFilters)
    limit: int = DEFAULT_LIMIT
    before: int | None = None


def parse(args: Mapping[str, str]) -> Search:
    """Turn ``phone``, ``type``, ``failed``, ``instance``, ``since``, ``until``, ``limit``,
    ``before`` and ``after`` into a Search; raise BadParameter naming the first bad one."""
    phone = _phone(args)
    since, until = _range(args)
    before, after = _cursor(args, "before"), _cursor(args, "after")
    if before is not None and after is not None:
        raise BadParameter("after", N_("Give either before or after, not both."))
    return Search(
        filters=Filters(
            phone=phone,
            type=_text(args, "type") or None,
            failed=flag(args, "failed"),
            instance=_text(args, "instance") or None,
            since=since,
            until=until,
        ),
        limit=_limit(args),
        before=before,
        after=after,
    )


def parse_messages(args: Mapping[str, str]) -> MessageSearch:
    """Turn ``phone``, ``instance``, ``state``, ``category``, ``messageId``, ``since``,
    ``until``, ``limit`` and ``before`` into a MessageSearch; raise BadParameter naming a bad one.

    An id pasted into ``phone`` (see ``pasted_id``) is read as ``messageId``.
    """
    message_id = pasted_id(args)
    phone = None if _pasted_in_phone(args) else _phone(args)
    since, until = _range(args)
    return MessageSearch(
        filters=MessageFilters(
            phone=phone,
            instance=_text(args, "instance") or None,
            state=_one_of(args, "state", STATES),
            category=_one_of(args, "category", failures.categories()),
            message_id=message_id,
            since=since,
            until=until,
        ),
        limit=_limit(args),
        before=_cursor(args, "before"),
    )


def pasted_id(args: Mapping[str, str]) -> str | None:
    """The messageId or zaapId asked for: the ``messageId`` field, or an id typed as phone."""
    return _text(args, "messageId") or (_text(args, "phone") if _pasted_in_phone(args) else None)


def _pasted_in_phone(args: Mapping[str, str]) -> bool:
    # Ids are one word of letters and digits (hex, or more digits than any phone has);
    # numbers are typed with spaces, signs or too few digits to be one.
    typed = _text(args, "phone")
    return (
        not _text(args, "messageId")
        and _ID.fullmatch(typed) is not None
        and not is_chat_id(typed)
        and (any(char.isalpha() for char in typed) or len(_DIGIT.findall(typed)) > MAX_DIGITS)
    )


def _one_of(args: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    # Codes are lower case; one typed in capitals is still the same code.
    value = _text(args, name).lower() or None
    if value is not None and value not in allowed:
        raise BadParameter(name, N_("Use one of: %(values)s."), values=", ".join(allowed))
    return value


def _phone(args: Mapping[str, str]) -> PhoneQuery | None:
    phone_text = _text(args, "phone")
    try:
        return parse_query(phone_text) if phone_text else None
    except PhoneQueryError as exc:
        raise BadParameter("phone", exc.message) from exc


def _range(args: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    since = _moment(args, "since", end_of_day=False)
    until = _moment(args, "until", end_of_day=True)
    if since and until and since >= until:
        raise BadParameter("until", N_("The end of the date range must be after its start."))
    return since, until


def _text(args: Mapping[str, str], name: str) -> str:
    value = args.get(name, "").strip()
    if "\x00" in value:  # no database stores it, and no one types it
        raise BadParameter(name, N_("Remove the NUL character from this value."))
    return value


def flag(args: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A yes/no parameter: 1/true/yes/on or 0/false/no/off; ``default`` when left empty."""
    value = _text(args, name).lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadParameter(name, N_("Use 1 or 0 (true or false)."))


def _moment(args: Mapping[str, str], name: str, end_of_day: bool) -> datetime | None:
    # A date alone is a whole UTC day: "until 2026-11-25" includes that day.
    value = _text(args, name)
    if not value:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(_OFFSET_AS_SPACE.sub(r"+\1", value).replace("Z", "+00:00"))
        # In UTC here: an offset that pushes a moment past year 1 or 9999 is a bad value.
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise BadParameter(
            name, N_("Use a date like 2026-11-25 or a time like 2026-11-25T14:30:00Z.")
        ) from exc


def _cursor(args: Mapping[str, str], name: str) -> int | None:
    value = _text(args, name)
    if not value:
        return None
    if not is_row_id(value):
        raise BadParameter(name, N_("Use a callback id: a whole number of 0 or more."))
    return int(value)


def _limit(args: Mapping[str, str]) -> int:
    value = _text(args, "limit")
    if not value:
        return DEFAULT_LIMIT
    if not _is_number(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise BadParameter("limit", N_("Use a whole number from 1 to %(max)d."), max=MAX_LIMIT)
    return int(value)


def is_row_id(value: str) -> bool:
    """Whether ``value`` is written as a row id: ASCII digits, at most the largest id."""
    return _is_number(value) and int(value) <= MAX_ROW_ID


def _is_number(value: str) -> bool:
    # ASCII digits only, and few enough that int() is cheap and fits a BIGINT.
    return value.isascii() and value.isdigit() and len(value) <= 19
