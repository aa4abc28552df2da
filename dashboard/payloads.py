"""Validate webhook bodies into callbacks with their fields, and show stored ones safely; no I/O."""

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import phones
from .translatable import N_

# Indexed text columns are capped so that no sender can make an index entry too large.
MAX_FIELD_LENGTH = 255
MAX_ERROR_LENGTH = 4096
# Enough of a message's words to recognise it on a screen; the raw body keeps them all.
MAX_CONTENT_LENGTH = 500
# Where a ReceivedCallback keeps its words, in the order they are looked for.
_CONTENT_FIELDS = (
    ("text", "message"),
    ("image", "caption"),
    ("video", "caption"),
    ("document", "caption"),
    ("document", "fileName"),
)
# Z-API stamps some events in seconds and most in milliseconds; no millisecond value
# since 1973 is below this, and no seconds value before the year 5138 is above it.
SECONDS_THRESHOLD = 100_000_000_000
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
# Real Z-API callbacks nest two or three levels. Far deeper is no callback, and drawing it
# again on every page and API answer would cost stack and megabytes.
MAX_DEPTH = 32
# Half of a UTF-16 pair with no other half: JSON's \uXXXX escapes can spell one, but no
# UTF-8 text, page or strict JSON reader can hold it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_NAME = re.compile("[A-Za-z_][A-Za-z0-9_]*")
# A field name longer than this is cut in the messages that point at it.
_NAME_SHOWN = 40
_NOT_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


class InvalidCallback(ValueError):
    """A body that is not a callback we can store; the message says why, for the sender.

    ``message`` is an untranslated msgid with ``%(name)s`` placeholders filled from
    ``params``, so the web layer can answer in the sender's language.
    """

    def __init__(self, message: str, **params):
        super().__init__(message % params)
        self.message = message
        self.params = params


@dataclass(frozen=True)
class Callback:
    """A parsed Z-API callback: the raw body plus the columns we extract from it."""

    raw: str
    dedup_key: str
    type: str
    instance_id: str | None = None
    phone: str | None = None
    message_id: str | None = None
    zaap_id: str | None = None
    momment: int | None = None
    error: str | None = None
    error_code: str | None = None
    status: str | None = None
    is_group: bool | None = None
    participant: str | None = None
    phone_key_reversed: str | None = None
    participant_key_reversed: str | None = None
    from_me: bool | None = None
    # WhatsApp's LIDs of the chat, the sender and the group member, as search keys.
    chat_lid_key_reversed: str | None = None
    sender_lid_key_reversed: str | None = None
    participant_lid_key_reversed: str | None = None
    status_ids: tuple[str, ...] = field(default=())
    # What a message said (its text or a caption), for the message it is about.
    content: str | None = None
    # (number key, LID key) pairs, both reversed, of people this callback names both ways.
    phone_lids: tuple[tuple[str, str], ...] = field(default=())

    def columns(self) -> dict[str, Any]:
        """The values of the ``deliveries`` row, without the child ``ids`` or the content."""
        values = dict(self.__dict__)
        del values["status_ids"], values["content"], values["phone_lids"]
        return values


def parse(body: bytes) -> Callback:
    """Validate a webhook body and extract its fields; raise InvalidCallback if unusable."""
    try:
        text = body.decode("utf-8")
        payload = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except InvalidCallback:
        raise
    except UnicodeDecodeError as exc:
        raise InvalidCallback(
            N_("The body is not UTF-8 text; send JSON encoded as UTF-8.")
        ) from exc
    except json.JSONDecodeError as exc:
        raise InvalidCallback(
            N_("The body is not valid JSON: %(problem)s at line %(line)d column %(column)d."),
            problem=exc.msg,
            line=exc.lineno,
            column=exc.colno,
        ) from exc
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InvalidCallback(
            N_("The body is not valid JSON: %(problem)s."), problem=str(exc)
        ) from exc
    except RecursionError as exc:
        raise _too_deep() from exc
    if not isinstance(payload, dict):
        raise InvalidCallback(
            N_("The body must be a JSON object, but it is a JSON %(kind)s."),
            kind=_JSON_KINDS.get(type(payload), "null"),
        )
    _check_tree(payload)
    declared_type = payload.get("type")
    callback_type = _text(declared_type) if isinstance(declared_type, str) else None
    if not callback_type or not callback_type.strip():
        raise InvalidCallback(
            N_(
                'The JSON object has no "type" field; every Z-API callback names its type, '
                'e.g. "DeliveryCallback".'
            )
        )
    if len(declared_type) > 64:
        raise InvalidCallback(N_('The "type" field is longer than 64 characters.'))

    is_status = callback_type == "MessageStatusCallback"
    is_message = callback_type == "ReceivedCallback"
    phone = _text(payload.get("phone"))
    # A group member is "participant" in a status and "participantPhone" in a message.
    member = _text(payload.get("participant") if is_status else payload.get("participantPhone"))
    status_ids = _status_ids(payload.get("ids")) if is_status else ()
    phone_key, member_key = phones.search_key(phone), phones.search_key(member)
    chat_lid, sender_lid, member_lid = (
        phones.search_key(_text(payload.get(name)))
        for name in ("chatLid", "senderLid", "participantLid")
    )
    # A member WhatsApp names only by their LID is shown as that LID; the number columns
    # and the phone-to-LID map still take the member's number alone.
    shown_member = member or (_text(payload.get("participantLid")) if member_lid else None)
    from_me = _flag(payload.get("fromMe")) if is_message else None
    return Callback(
        raw=text,
        dedup_key=dedup_key(payload),
        type=callback_type,
        instance_id=_text(payload.get("instanceId")),
        phone=phone,
        # A status names its messages in ids[]; the first one is the message it is shown as.
        message_id=_text(payload.get("messageId")) or (status_ids[0] if status_ids else None),
        zaap_id=_text(payload.get("zaapId")),
        momment=normalise_momment(payload.get("momment")),
        error=_text(payload.get("error"), MAX_ERROR_LENGTH),
        error_code=_text(payload.get("errorCode")),
        # Statuses, messages (RECEIVED, SENT...) and presence (COMPOSING...) each have one.
        status=_text(payload.get("status")),
        is_group=_flag(payload.get("isGroup")),
        participant=shown_member,
        phone_key_reversed=phone_key,
        participant_key_reversed=member_key,
        from_me=from_me,
        chat_lid_key_reversed=chat_lid,
        sender_lid_key_reversed=sender_lid,
        participant_lid_key_reversed=member_lid,
        status_ids=status_ids,
        content=_content(payload) if is_message else None,
        phone_lids=_phone_lids(payload, phone_key, member_key, chat_lid, sender_lid, member_lid)
        if is_message
        else (),
    )


def _phone_lids(
    payload: dict,
    chat: str | None,
    member: str | None,
    chat_lid: str | None,
    sender_lid: str | None,
    member_lid: str | None,
) -> tuple[tuple[str, str], ...]:
    # Which LID is whose: in a chat with one person, the chat's LID is that person's, and
    # so is the sender's when they sent it (ours otherwise); in a group, the member's LID
    # is the member's. Only a number on the other side makes a pair worth keeping.
    one_person = payload.get("isGroup") is not True
    pairs = []
    if one_person and _is_number_key(chat):
        pairs.append((chat, chat_lid))
        if payload.get("fromMe") is False:
            pairs.append((chat, sender_lid))
    if _is_number_key(member):
        pairs.append((member, member_lid))
    found = dict.fromkeys((number, lid) for number, lid in pairs if lid and not _is_number_key(lid))
    return tuple(found)


def _is_number_key(key: str | None) -> bool:
    return bool(key) and key.isascii() and key.isdigit()


def dedup_key(payload: dict) -> str:
    """SHA-256 of the canonical JSON: equal for the same object whatever its key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def normalise_momment(value: Any) -> int | None:
    """Return the event time in milliseconds; Z-API sometimes sends seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    millis = int(value * 1000) if abs(value) < SECONDS_THRESHOLD else int(value)
    # BIGINT bounds: anything past them is not a time, so keep it only in the raw body.
    return millis if -(2**63) <= millis < 2**63 else None


def _text(value: Any, limit: int = MAX_FIELD_LENGTH) -> str | None:
    # Z-API sends these as strings; numbers are kept as their digits, anything else
    # (objects, lists) stays only in the raw body.
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    # PostgreSQL refuses NUL in text; the raw body keeps it.
    return value.replace("\x00", "")[:limit] or None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _content(payload: dict) -> str | None:
    # The words of a message: its text, else the caption or file name of its media.
    for kind, key in _CONTENT_FIELDS:
        part = payload.get(kind)
        if isinstance(part, dict) and (words := _text(part.get(key), MAX_CONTENT_LENGTH)):
            return words
    return None


def _status_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    unique = dict.fromkeys(_text(item) for item in value)
    return tuple(item for item in unique if item)


def _refuse_constant(name: str):
    # json.loads reads these words as floats, but they are not JSON and no strict reader
    # of our API could read them back.
    raise InvalidCallback(
        N_(
            "The body holds %(constant)s, which is not a JSON number; send the number in "
            "digits, or null when there is none."
        ),
        constant=name,
    )


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise InvalidCallback(
            N_(
                "The number %(number)s is too large to be read as a number; send it as a "
                "string if it is an identifier."
            ),
            number=_cut(literal),
        )
    return value


def _too_deep() -> InvalidCallback:
    return InvalidCallback(
        N_(
            "The body nests objects and arrays more than %(limit)d levels deep; Z-API "
            "callbacks use 2 or 3 levels, so send the callback as Z-API sends it."
        ),
        limit=MAX_DEPTH,
    )


def _check_tree(payload: dict) -> None:
    # Walked with a stack of its own, so that no body can exhaust Python's.
    pending: list[tuple[Any, tuple]] = [(payload, ())]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            _check_text(value, path, None)
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_DEPTH:
            raise _too_deep()
        if isinstance(value, list):
            pending.extend((child, (*path, index)) for index, child in enumerate(value))
            continue
        for name, child in value.items():
            _check_text(name, path, name)
            pending.append((child, (*path, name)))


def _check_text(text: str, path: tuple, name: str | None) -> None:
    found = _LONE_SURROGATE.search(text)
    if found is None:
        return
    code = _escape(found)
    if name is None:
        raise InvalidCallback(
            N_(
                "The text at %(where)s holds a lone surrogate (%(code)s), which is not a "
                "character; send valid Unicode: UTF-8, with escaped surrogates only in "
                "high-low pairs."
            ),
            where=_where(path),
            code=code,
        )
    raise InvalidCallback(
        N_(
            "The field name %(name)s in %(where)s holds a lone surrogate (%(code)s), which is "
            "not a character; send valid Unicode: UTF-8, with escaped surrogates only in "
            "high-low pairs."
        ),
        name=_quoted(name),
        where=_where(path),
        code=code,
    )


def _where(path: tuple) -> str:
    # A JSONPath such as $.ids[0] or $["odd name"], as a sender would look it up.
    parts = ["$"]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _PLAIN_NAME.fullmatch(step) and len(step) <= _NAME_SHOWN:
            parts.append(f".{step}")
        else:
            parts.append(f"[{_quoted(step)}]")
    return "".join(parts)


def _quoted(name: str) -> str:
    # ASCII escapes: the message itself must hold no lone surrogate.
    return json.dumps(_cut(name))


def _cut(text: str) -> str:
    return text if len(text) <= _NAME_SHOWN else text[:_NAME_SHOWN] + "…"


@dataclass(frozen=True)
class Shown:
    """A stored body made safe to serve again, whatever an older version let in.

    ``value`` is strict JSON for the API: a lone surrogate is written out as ``\\uXXXX``
    text, NaN and the infinities as their names, and whatever is nested deeper than
    MAX_DEPTH is replaced by a note. ``text`` is the same body indented for a page, each
    lone surrogate shown as the escape that was sent. A stored text that is not a JSON
    object is both, as it is.
    """

    value: Any
    text: str
    is_object: bool
    too_deep: bool


def shown(raw: str, too_deep_note: str) -> Shown:
    """The stored body ``raw`` as every page and API answer can render it."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        return Shown(_escaped(raw), _escaped(raw), is_object=False, too_deep=False)
    value, cut = _bounded(payload, too_deep_note, _escaped)
    # Escaped after encoding, so that the page reads "\ud800" as sent, not "\\ud800".
    tree, _ = _bounded(payload, too_deep_note, str)
    text = _escaped(json.dumps(tree, indent=2, ensure_ascii=False))
    return Shown(value, text, is_object=True, too_deep=cut)


def _bounded(payload: Any, too_deep_note: str, text: Callable[[str], str]) -> tuple[Any, bool]:
    # A copy built with a stack of its own, so that depth costs no recursion here or later;
    # ``text`` rewrites every string, field names included.
    cut = False
    top: list[Any] = [None]
    pending: list[tuple[Any, Any, Any, int]] = [(payload, top, 0, 1)]
    while pending:
        value, into, slot, depth = pending.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            into[slot], cut = too_deep_note, True
        elif isinstance(value, dict):
            into[slot] = copy = {}
            for name, child in value.items():
                name = text(name)
                copy[name] = None  # keeps the sender's order of fields
                pending.append((child, copy, name, depth + 1))
        elif isinstance(value, list):
            into[slot] = copy = [None] * len(value)
            pending.extend((child, copy, index, depth + 1) for index, child in enumerate(value))
        elif isinstance(value, str):
            into[slot] = text(value)
        elif isinstance(value, float) and not math.isfinite(value):
            into[slot] = _NOT_FINITE.get(value, "NaN")
        else:
            into[slot] = value
    return top[0], cut


def _escaped(text: str) -> str:
    # The escape the sender wrote, as visible text: shown, never decoded into a character.
    return _LONE_SURROGATE.sub(_escape, text)


def _escape(found: re.Match) -> str:
    return f"\\u{ord(found.group()):04x}"
