"""Turn a webhook body into a validated callback with its searchable fields; no I/O."""

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import phones
from .translatable import N_

# Indexed text columns are capped so that no sender can make an index entry too large.
MAX_FIELD_LENGTH = 255
MAX_ERROR_LENGTH = 4096
# Z-API stamps some events in seconds and most in milliseconds; no millisecond value
# since 1973 is below this, and no seconds value before the year 5138 is above it.
SECONDS_THRESHOLD = 100_000_000_000
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


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
    status_ids: tuple[str, ...] = field(default=())

    def columns(self) -> dict[str, Any]:
        """The values of the ``deliveries`` row, without the child ``ids``."""
        values = dict(self.__dict__)
        del values["status_ids"]
        return values


def parse(body: bytes) -> Callback:
    """Validate a webhook body and extract its fields; raise InvalidCallback if unusable."""
    try:
        text = body.decode("utf-8")
        payload = json.loads(text)
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
        raise InvalidCallback(N_("The body is not valid JSON: it is nested too deeply.")) from exc
    if not isinstance(payload, dict):
        raise InvalidCallback(
            N_("The body must be a JSON object, but it is a JSON %(kind)s."),
            kind=_JSON_KINDS.get(type(payload), "null"),
        )
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
    phone = _text(payload.get("phone"))
    # A group member is "participant" in a status and "participantPhone" in a message.
    member = _text(payload.get("participant") if is_status else payload.get("participantPhone"))
    return Callback(
        raw=text,
        dedup_key=dedup_key(payload),
        type=callback_type,
        instance_id=_text(payload.get("instanceId")),
        phone=phone,
        message_id=_text(payload.get("messageId")),
        zaap_id=_text(payload.get("zaapId")),
        momment=normalise_momment(payload.get("momment")),
        error=_text(payload.get("error"), MAX_ERROR_LENGTH),
        error_code=_text(payload.get("errorCode")),
        status=_text(payload.get("status")) if is_status else None,
        is_group=payload.get("isGroup") if isinstance(payload.get("isGroup"), bool) else None,
        participant=member if is_status else None,
        phone_key_reversed=phones.reversed_key(phones.stored_key(phone)),
        participant_key_reversed=phones.reversed_key(phones.stored_key(member)),
        status_ids=_status_ids(payload.get("ids")) if is_status else (),
    )


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
    # Lone surrogates cannot be encoded and PostgreSQL refuses NUL; the raw body keeps both.
    value = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return value[:limit] or None


def _status_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    unique = dict.fromkeys(_text(item) for item in value)
    return tuple(item for item in unique if item)
