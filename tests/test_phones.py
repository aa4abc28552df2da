"""The phone matcher: real-world formats, the ninth digit, chat ids, display and masking."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.phones import (
    PhoneQuery,
    PhoneQueryError,
    display,
    mask,
    parse_query,
    reversed_key,
    stored_key,
)

MOBILE = "5544999999999"


@pytest.mark.parametrize(
    "typed",
    [
        "+55 (44) 9 9999-9999",
        "55 44 99999-9999",
        "044 99999-9999",
        "0 15 44 99999-9999",
        "44999999999",
        "4499999999",
        "(44) 99999.9999",
        "+55 44 9999-9999",
        "554499999999",
        "5544999999999",
        "0055 44 99999 9999",
        " +55-44-99999-9999 ",
    ],
)
def test_every_format_of_a_brazilian_mobile_is_one_key(typed):
    assert parse_query(typed) == PhoneQuery("exact", MOBILE)


@pytest.mark.parametrize("sent", ["554499999999", "5544999999999"])
def test_both_ninth_digit_forms_z_api_sends_are_the_same_key(sent):
    assert stored_key(sent) == MOBILE


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("(11) 3333-4444", "551133334444"),  # a landline has no ninth digit to add
        ("+55 11 3333-4444", "551133334444"),
        ("+1 (415) 555-2671", "14155552671"),  # other countries match on their digits
        ("14155552671", "14155552671"),
        ("+44 7911 123456", "447911123456"),
        ("120363019502650977-group", "120363019502650977-group"),
        ("999999999999999@LID", "999999999999999@lid"),
        ("120363166555745933@newsletter", "120363166555745933@newsletter"),
        ("5511999999999-1623281429", "5511999999999-1623281429"),  # legacy group
        ("123456789-broadcast", "123456789-broadcast"),
        ("status@broadcast", "status@broadcast"),
    ],
)
def test_landlines_foreign_numbers_and_chat_ids(typed, key):
    assert parse_query(typed) == PhoneQuery("exact", key)
    assert stored_key(key) == key


@pytest.mark.parametrize(
    ("typed", "digits"),
    [
        ("9999-9999", "99999999"),
        ("9999", "9999"),
        ("final 1234", "1234"),
        ("9 9999-9999", "999999999"),
    ],
)
def test_a_short_number_searches_by_how_numbers_end(typed, digits):
    assert parse_query(typed) == PhoneQuery("suffix", digits)


def test_a_suffix_finds_both_ninth_digit_forms():
    suffix = parse_query("9999-9999").value
    for sent in ("554499999999", "5544999999999"):
        assert reversed_key(stored_key(sent)).startswith(suffix[::-1])


@pytest.mark.parametrize(
    "typed", ["", "   ", "abc", "+", "()--", "12", "+55", "+55 44", "+1 23", "+0000"]
)
def test_input_without_enough_digits_gets_a_message(typed):
    with pytest.raises(PhoneQueryError) as caught:
        parse_query(typed)
    assert "digits" in caught.value.message or "too short" in caught.value.message


def test_nothing_to_match_has_no_key():
    assert stored_key(None) is None
    assert stored_key("  ") is None
    assert reversed_key(None) is None


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("5544999999999", "+55 44 99999-9999"),
        ("554499999999", "+55 44 9999-9999"),
        ("14155552671", "+1 415-555-2671"),
        ("120363019502650977-group", "120363019502650977-group"),
        ("999999999999999@lid", "999999999999999@lid"),
        ("not a phone", "not a phone"),
        (None, ""),
    ],
)
def test_display_for_people(sent, shown):
    assert display(sent) == shown


@pytest.mark.parametrize(
    ("sent", "masked"),
    [
        ("5544999999999", "55 44 9****-9999"),
        ("554499999999", "55 44 9***-9999"),
        ("14155552671", "14*****2671"),
        ("999999999999991@lid", "***********9991@lid"),
        ("120363019502650977-group", "120363019502650977-group"),
        (None, ""),
    ],
)
def test_mask_hides_the_middle(sent, masked):
    assert mask(sent) == masked


# A corpus of distinct Brazilian numbers: area code, then a mobile or a landline.
AREA = st.integers(11, 99).filter(lambda n: n % 10 != 0).map(str)
# Mobiles are 9 then 6-9: the numbers that had 8 digits before the ninth was added.
MOBILE_SUBSCRIBER = st.integers(6_000_0000, 9_999_9999).map(lambda n: f"9{n}")
LANDLINE_SUBSCRIBER = st.integers(2_000_0000, 5_999_9999).map(str)
BRAZILIAN = st.tuples(AREA, st.one_of(MOBILE_SUBSCRIBER, LANDLINE_SUBSCRIBER))


def _formats(area: str, subscriber: str) -> list[str]:
    local = f"{subscriber[:-4]}-{subscriber[-4:]}"
    formats = [
        f"+55 ({area}) {local}",
        f"55 {area} {local}",
        f"0{area} {local}",
        f"{area}{subscriber}",
        f"({area}) {subscriber[:-4]}.{subscriber[-4:]}",
        f"0 21 {area} {local}",
    ]
    if len(subscriber) == 9:  # the same mobile without its ninth digit
        formats += [f"+55 {area} {subscriber[1:]}", f"{area}{subscriber[1:]}"]
    return formats


@given(BRAZILIAN)
@settings(max_examples=300)
def test_property_every_format_of_one_number_gives_one_key(number):
    area, subscriber = number
    stored = stored_key("55" + area + subscriber)
    for typed in _formats(area, subscriber):
        assert parse_query(typed) == PhoneQuery("exact", stored), typed


@given(st.lists(BRAZILIAN, min_size=2, max_size=60, unique=True))
@settings(max_examples=200)
def test_property_different_numbers_never_share_a_key(numbers):
    keys = {stored_key("55" + area + subscriber) for area, subscriber in numbers}
    assert len(keys) == len(numbers)


@given(st.text(alphabet="0123456789 +-().@abcdefghijklmnopqrstuvwxyz", max_size=40))
@settings(max_examples=500)
def test_property_any_input_gives_a_search_or_a_message(typed):
    try:
        query = parse_query(typed)
    except PhoneQueryError as exc:
        assert exc.message
    else:
        assert query.value
