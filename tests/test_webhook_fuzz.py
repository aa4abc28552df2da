"""Random bodies, content types and sizes never make the webhook fail with a 5xx."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/problem+json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ]
    ),
    # Anything a client can put in a header line.
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
# What a real sender can write: finite numbers, text without lone surrogates (the bodies
# that hold those are refused, see test_stored_rows_render.py).
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
KNOWN_KEYS = st.sampled_from(
    ["type", "phone", "messageId", "zaapId", "momment", "ids", "status", "error", "isGroup"]
)
CALLBACK_LIKE = st.dictionaries(KNOWN_KEYS | st.text(max_size=8), JSON_VALUES, max_size=8)
BODIES = st.one_of(
    st.binary(max_size=2048),
    CALLBACK_LIKE.map(lambda d: json.dumps(d).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=60 * 1024, max_value=70 * 1024).map(lambda n: b"{" + b" " * n + b"}"),
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_random_requests_never_get_a_server_error(client, webhook_path, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(webhook_path, data=body, headers=headers)
    assert response.status_code in {200, 400, 413, 415}
    assert response.is_json
    if response.status_code == 200:
        assert set(response.json) == {"id", "duplicate"}
    else:
        assert response.json["error"]


@FUZZ
@given(payload=CALLBACK_LIKE, callback_type=st.text(min_size=1, max_size=64))
def test_any_object_with_a_type_is_stored(client, webhook_path, payload, callback_type):
    payload["type"] = callback_type
    response = client.post(
        webhook_path, data=json.dumps(payload), headers={"Content-Type": "application/json"}
    )
    if any(character.isalnum() for character in callback_type):
        assert response.status_code == 200, response.json
    else:
        assert response.status_code in {200, 400}
        if response.status_code == 400:
            assert '"type"' in response.json["error"]
