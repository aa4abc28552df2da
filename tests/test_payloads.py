import json

import pytest

from dashboard.payloads import InvalidCallback, normalise_momment, parse

from .support import FAILED, SEED, STATUS


def body(payload) -> bytes:
    return json.dumps(payload).encode()


def test_seed_delivery_fields_are_extracted():
    callback = parse(body(SEED))
    assert callback.type == "DeliveryCallback"
    assert callback.phone == "554499999999"
    assert callback.message_id == SEED["messageId"]
    assert callback.zaap_id == SEED["zaapId"]
    assert callback.instance_id == "instance.id"
    assert callback.error is None
    assert callback.momment is None
    assert json.loads(callback.raw) == SEED


def test_failed_delivery_keeps_error_text_and_code():
    callback = parse(body({**FAILED, "errorCode": "SHADOW_BAN"}))
    assert callback.error == "Phone number does not exist"
    assert callback.error_code == "SHADOW_BAN"
    assert callback.momment == 1777494091684


def test_status_callback_extracts_status_group_participant_and_ids():
    callback = parse(body({**STATUS, "participant": "5544988887777", "isGroup": True}))
    assert callback.status == "READ"
    assert callback.is_group is True
    assert callback.participant == "5544988887777"
    assert callback.status_ids == ("999999999999999999999", "888888888888888888888")


def test_status_ids_are_deduplicated_and_non_strings_dropped():
    callback = parse(body({**STATUS, "ids": ["a", "a", None, {"x": 1}, "b"]}))
    assert callback.status_ids == ("a", "b")


def test_ids_are_read_only_from_statuses():
    callback = parse(body({**SEED, "ids": ["x"]}))
    assert callback.status_ids == ()
    assert callback.message_id == SEED["messageId"]


def test_a_status_is_shown_as_the_first_message_it_names():
    assert parse(body(STATUS)).message_id == "999999999999999999999"
    assert parse(body({**STATUS, "ids": []})).message_id is None


# Shaped like Z-API's documented examples (shared/zapi-reference.md sections 1.3 and 1.4).
RECEIVED_IN_GROUP = {
    "isGroup": True,
    "instanceId": "A20DA9C0183A2D35A260F53F5D2B9244",
    "messageId": "3EB0C431C26A1916B2C3",
    "phone": "120363019502650977-group",
    "fromMe": False,
    "momment": 1632228638000,
    "status": "RECEIVED",
    "participantPhone": "5544999999999",
    "participantLid": "81896604192873@lid",
    "type": "ReceivedCallback",
    "text": {"message": "bom dia"},
}
PRESENCE = {
    "type": "PresenceChatCallback",
    "phone": "5544999999999",
    "status": "COMPOSING",
    "lastSeen": None,
    "instanceId": "instance.id",
}


def test_a_received_message_has_its_status_and_its_group_member():
    callback = parse(body(RECEIVED_IN_GROUP))
    assert callback.status == "RECEIVED"
    assert callback.participant == "5544999999999"
    assert callback.participant_key_reversed is not None
    assert callback.from_me is False
    assert callback.content == "bom dia"


def test_a_group_member_known_only_by_a_lid_is_the_participant():
    lid_only = {**RECEIVED_IN_GROUP, "participantPhone": None}
    without_the_field = {k: v for k, v in RECEIVED_IN_GROUP.items() if k != "participantPhone"}
    for payload in (lid_only, without_the_field):
        callback = parse(body(payload))
        assert callback.participant == "81896604192873@lid"
        # A LID is no number: the number's search key and the phone-to-LID map stay empty.
        assert callback.participant_key_reversed is None
        assert callback.participant_lid_key_reversed == "dil@37829140669818"
        assert callback.phone_lids == ()
    # The member's number, when it came, is who is shown.
    assert parse(body(RECEIVED_IN_GROUP)).participant == "5544999999999"
    nobody = {**RECEIVED_IN_GROUP, "participantPhone": None, "participantLid": None}
    assert parse(body(nobody)).participant is None


def test_a_presence_has_its_status():
    callback = parse(body(PRESENCE))
    assert callback.status == "COMPOSING"
    assert callback.message_id is None


def test_momment_in_seconds_becomes_milliseconds():
    assert normalise_momment(1580163342) == 1580163342000
    assert normalise_momment(1777494009341) == 1777494009341
    assert normalise_momment(1580163342.5) == 1580163342500


@pytest.mark.parametrize("value", ["1580163342", None, True, [1], float("nan"), float("inf")])
def test_momment_that_is_not_a_number_is_left_out(value):
    assert normalise_momment(value) is None


def test_key_order_and_whitespace_do_not_change_the_dedup_key():
    compact = json.dumps(SEED, separators=(",", ":")).encode()
    spaced = json.dumps(dict(reversed(list(SEED.items()))), indent=4).encode()
    assert parse(compact).dedup_key == parse(spaced).dedup_key


def test_different_callbacks_have_different_dedup_keys():
    assert parse(body(SEED)).dedup_key != parse(body(FAILED)).dedup_key


def test_unknown_types_are_accepted_raw():
    callback = parse(body({"type": "ProxyCallback", "instanceId": "X", "error": "proxy failed"}))
    assert callback.type == "ProxyCallback"
    assert callback.error == "proxy failed"


def test_numbers_are_kept_as_digits_and_objects_left_in_raw_only():
    callback = parse(body({"type": "DeliveryCallback", "phone": 5544999999999, "zaapId": {}}))
    assert callback.phone == "5544999999999"
    assert callback.zaap_id is None


def test_long_strings_and_nul_are_made_safe_for_the_columns():
    callback = parse(b'{"type": "X", "phone": "\\u0000' + b"9" * 400 + b'"}')
    assert callback.phone == "9" * 255


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "a JSON array"),
        (b'"text"', "a JSON string"),
        (b"null", "a JSON null"),
        (b"{}", 'no "type" field'),
        (b'{"type": ""}', 'no "type" field'),
        (b'{"type": 7}', 'no "type" field'),
        (b'{"type": "' + b"x" * 65 + b'"}', "longer than 64"),
        (b"[" * 100_000, "more than 32 levels deep"),
        (b'{"type": "X", "n": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"type": "X", "a": ' + b"[" * 32 + b"]" * 32 + b"}", "more than 32 levels deep"),
        (b'{"type": "X", "a": ' + b"[" * 980 + b"]" * 980 + b"}", "more than 32 levels deep"),
        (b'{"type": "X", "momment": NaN}', "holds NaN, which is not a JSON number"),
        (b'{"type": "X", "a": [Infinity]}', "holds Infinity, which"),
        (b'{"type": "X", "a": {"b": -Infinity}}', "holds -Infinity, which"),
        (b'{"type": "X", "n": 1e999}', "number 1e999 is too large"),
        (b'{"type": "X", "n": -' + b"9" * 400 + b".0}", r"number -9{39}… is too large"),
        (
            b'{"type":"DeliveryCallback","messageId":"x\\ud800"}',
            r"text at \$\.messageId holds a lone surrogate \(\\ud800\)",
        ),
        (
            b'{"type": "X", "ids": ["a", "\\udfff"]}',
            r"text at \$\.ids\[1\] holds a lone surrogate \(\\udfff\)",
        ),
        (
            b'{"type": "X", "a b": {"\\udc00x": 1}}',
            r'field name "\\udc00x" in \$\["a b"\] holds a lone surrogate \(\\udc00\)',
        ),
        (b'{"type": "\\ud83d"}', r"text at \$\.type holds a lone surrogate"),
    ],
)
def test_unusable_bodies_are_refused_with_a_reason(raw, message):
    with pytest.raises(InvalidCallback, match=message):
        parse(raw)


def test_a_body_as_deep_as_the_limit_and_paired_surrogates_are_accepted():
    deep = b'{"type": "X", "a": ' + b"[" * 31 + b"]" * 31 + b', "e": "\\ud83d\\ude00"}'
    callback = parse(deep)
    assert json.loads(callback.raw)["e"] == "\U0001f600"
