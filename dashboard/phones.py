"""Phone numbers and chat ids: one canonical key per number, search input, display, masking.

Pure functions, no I/O. Z-API sends numbers as international digits (``5544999999999``)
and other chats as ids (``120363019502650977-group``, ``999999999999999@lid``). People
type numbers every which way. Both go through the same canonical key, so a search finds
a callback whatever the format on either side.
"""

import re
from functools import lru_cache
from typing import Literal, NamedTuple

import phonenumbers

from .translatable import N_

BRAZIL = "55"
# Typed numbers of this many digits are the end of a number ("final 9999-9999").
SUFFIX_DIGITS = range(4, 10)
# The shortest whole international number (country code + subscriber) worth looking up.
MIN_INTERNATIONAL_DIGITS = 7
# A Brazilian mobile's subscriber number: 9 digits starting with 9, or the same without
# that ninth digit, as older payloads and people still write it (8 digits, 6-9 first).
_NINTH_DIGIT_MISSING = re.compile(r"[6-9]\d{7}")
_AREA_CODE = re.compile(r"[1-9]{2}")
_NOT_DIGITS = re.compile(r"[^0-9]+")
_LEGACY_GROUP = re.compile(r"\d{10,15}-\d{9,11}")
_CHAT_ID_ENDINGS = ("-group", "-broadcast")


class PhoneQueryError(ValueError):
    """Search input that names no number; the message says what to type instead."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class PhoneQuery(NamedTuple):
    """What a typed phone searches for: one exact key, or the digits a number ends with."""

    kind: Literal["exact", "suffix"]
    value: str


def is_chat_id(value: str) -> bool:
    """Whether a value names a group, LID, channel or broadcast list rather than a number."""
    value = value.strip().lower()
    return (
        "@" in value
        or value.endswith(_CHAT_ID_ENDINGS)
        or _LEGACY_GROUP.fullmatch(value) is not None
    )


def canonical_key(international_digits: str) -> str:
    """The key of a number given as international digits; Brazilian mobiles get the 9th digit."""
    digits = international_digits
    if digits.startswith(BRAZIL) and len(digits) in (12, 13):
        area, subscriber = digits[2:4], digits[4:]
        if _NINTH_DIGIT_MISSING.fullmatch(subscriber):
            subscriber = "9" + subscriber
        return BRAZIL + area + subscriber
    return digits


def stored_key(value: str | None) -> str | None:
    """The key of a phone or chat id as Z-API sends it; None when there is nothing to match."""
    if not value or not value.strip():
        return None
    if is_chat_id(value):
        return _chat_key(value)
    digits = _digits(value)
    return canonical_key(digits) if digits else _chat_key(value)


def reversed_key(key: str | None) -> str | None:
    """The key read backwards: one index on it answers exact and "ends with" searches."""
    return key[::-1] if key else None


@lru_cache(maxsize=4096)
def search_key(value: str | None) -> str | None:
    """The stored, backwards key of a phone or chat id as Z-API sends it (see stored_key)."""
    # Cached: a team writes to the same customers all day, and every callback needs the key.
    return reversed_key(stored_key(value))


def reversed_range(query: PhoneQuery) -> tuple[str, str]:
    """The reversed keys a search covers: ``low <= key < high`` (``low`` alone for exact).

    Keys are stored backwards, so "ends with 9999" is the range of keys starting "9999",
    up to that prefix with its last character moved one up ("999:").
    """
    key = query.value[::-1]
    return key, key[:-1] + chr(ord(key[-1]) + 1)


def parse_query(text: str) -> PhoneQuery:
    """Read a phone typed by a person, in any format; raise PhoneQueryError if it names none."""
    text = text.strip()
    if is_chat_id(text):
        return PhoneQuery("exact", _chat_key(text))
    digits = _digits(text)
    if not digits:
        raise PhoneQueryError(
            N_("Type a phone number with digits, e.g. +55 44 99999-9999 or the last 8 digits.")
        )
    if len(digits) < SUFFIX_DIGITS.start:
        raise PhoneQueryError(
            N_("Type at least 4 digits: a whole number, or how it ends, e.g. 9999-9999.")
        )
    if not text.startswith("+") and len(digits) in SUFFIX_DIGITS:
        return PhoneQuery("suffix", digits)
    if text.startswith("+") or digits.startswith("00"):
        # "00" is how an international number is dialled from Brazil: "0055 44 ...".
        digits = digits.removeprefix("00")
        if len(digits) < MIN_INTERNATIONAL_DIGITS:
            raise PhoneQueryError(
                N_("That number is too short: type the country code, area code and number.")
            )
        return PhoneQuery("exact", canonical_key(digits))
    return PhoneQuery("exact", canonical_key(_brazilian_international(text, digits)))


def display(value: str | None) -> str:
    """A phone as people write it (``+55 44 99999-9999``); chat ids and odd values as sent."""
    if not value:
        return ""
    digits = value.strip().lstrip("+")
    if not digits.isascii() or not digits.isdigit():
        return value  # a chat id, or something that is not a plain number
    parts = _brazilian_parts(digits)
    if parts:
        area, subscriber = parts
        return f"+55 {area} {subscriber[:-4]}-{subscriber[-4:]}"
    try:
        number = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return value
    if not phonenumbers.is_possible_number(number):
        return value
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def mask(value: str | None) -> str:
    """A phone with its middle hidden (``55 44 9****-9999``), for exports that leave the team."""
    if not value:
        return ""
    digits = _digits(value)
    lowered = value.strip().lower()
    if lowered.endswith(("-group", "-broadcast", "@newsletter", "@broadcast")):
        return value  # groups, lists and channels are not a person
    if "@" in lowered:
        local, _, domain = value.partition("@")
        return _hide_middle(local, keep_start=0) + "@" + domain
    parts = _brazilian_parts(digits)
    if parts:
        area, subscriber = parts
        hidden = subscriber[0] + "*" * (len(subscriber) - 5)
        return f"55 {area} {hidden}-{subscriber[-4:]}"
    return _hide_middle(digits or value, keep_start=2)


def _hide_middle(text: str, keep_start: int) -> str:
    keep_end = 4 if len(text) > 6 else 2
    hidden = max(len(text) - keep_start - keep_end, 1)
    return text[:keep_start] + "*" * hidden + text[keep_start + hidden :]


def _brazilian_parts(digits: str) -> tuple[str, str] | None:
    # (area code, subscriber) of a Brazilian number in international digits.
    if digits.startswith(BRAZIL) and len(digits) in (12, 13) and _AREA_CODE.fullmatch(digits[2:4]):
        return digits[2:4], digits[4:]
    return None


def _brazilian_international(text: str, digits: str) -> str:
    # Typed without "+": already international (55 + area + number), or national, where
    # libphonenumber knows the trunk "0" and carrier codes ("0 15 44 ...").
    if digits.startswith(BRAZIL) and len(digits) in (12, 13):
        return digits
    if len(digits) in (10, 11) and _is_brazilian_national(digits):
        return BRAZIL + digits
    if digits.startswith("0"):
        try:
            number = phonenumbers.parse(text, "BR")
        except phonenumbers.NumberParseException:
            return digits
        national = str(number.national_number)
        if number.country_code == 55 and _is_brazilian_national(national):
            return BRAZIL + national
    return digits  # someone else's country: its digits are the number


def _is_brazilian_national(digits: str) -> bool:
    # Area code (two digits 1-9) plus an 8-digit number, or a 9-digit mobile starting with 9.
    if not _AREA_CODE.fullmatch(digits[:2]):
        return False
    subscriber = digits[2:]
    return (len(subscriber) == 8 and subscriber[0] != "0" and subscriber[0] != "1") or (
        len(subscriber) == 9 and subscriber[0] == "9"
    )


def _digits(value: str) -> str:
    return _NOT_DIGITS.sub("", value)


def _chat_key(value: str) -> str:
    # Ids match exactly, whatever the case and any spaces a paste brought along.
    return "".join(value.split()).lower()
