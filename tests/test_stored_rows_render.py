"""Every stored row renders on every page and API answer, whatever its body holds."""

import hashlib
import html
import json
import math

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from dashboard import deliveries, live
from dashboard.extensions import db
from dashboard.models import Delivery
from dashboard.payloads import MAX_DEPTH

from .support import signed_in_client

# Everything a signed-in person or script can fetch that draws a stored row.
PAGES = (
    "/deliveries/{id}",
    "/api/deliveries/{id}",
    "/api/deliveries",
    "/search",
    "/search/export.csv",
    "/",
    "/?view=callbacks",
)
DEEP = "[" * 980 + "]" * 980
# Bodies that older versions stored, or that a row written by hand may hold.
LEGACY_BODIES = {
    "lone surrogate in a value": r'{"type": "DeliveryCallback", "messageId": "x\ud800"}',
    "lone surrogate in a key": r'{"type": "DeliveryCallback", "\udc00": {"\ud83d": "\udfff"}}',
    "NaN and infinities": '{"type": "X", "momment": NaN, "a": [Infinity, -Infinity], "b": 1e999}',
    "980 levels deep": '{"type": "X", "a": ' + DEEP + "}",
    "too deep to parse": '{"type": "X", "a": ' + "[" * 20_000 + "]" * 20_000 + "}",
    "not JSON": "this is not JSON \\ud800",
    "a JSON array": "[1, 2]",
    "wide at the depth limit": '{"type": "X", "a": '
    + "[" * (MAX_DEPTH - 2)
    + ",".join(["0"] * 60_000)
    + "]" * (MAX_DEPTH - 2)
    + "}",
}


@pytest.fixture
def viewer(app):
    """A signed-in viewer; Hypothesis's examples share it, as they share the app."""
    return signed_in_client(app)


def strict_json(data):
    """``data`` parsed as strict JSON: no NaN or Infinity, and no lone surrogate anywhere."""
    value = json.loads(data, parse_constant=_refuse_constant)
    # A lone surrogate, in a key or a value, cannot be written as UTF-8.
    json.dumps(value, ensure_ascii=False).encode("utf-8")
    return value


def _refuse_constant(name):
    raise AssertionError(f"{name} is not JSON")


def fetch_everything(client, row_id: int) -> dict:
    """Every page and API answer that draws row ``row_id``, checked; the API's detail."""
    answers = {}
    for page in PAGES:
        path = page.format(id=row_id)
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        body = response.get_data().decode("utf-8")  # strict: no lone surrogate got through
        answers[path] = strict_json(body) if response.is_json else body
    with db.reading() as session:
        frame = live.event_frame("delivery", deliveries.to_json(deliveries.get(session, row_id)))
    assert strict_json(frame)["data"]["id"] == row_id
    return answers


def insert_row(raw: str, **columns) -> int:
    """A row written straight to the table, as an older version (or a person) left it."""
    key = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()
    with db.writing() as session:
        row = Delivery(dedup_key=key, type="DeliveryCallback", raw=raw, **columns)
        session.add(row)
        session.flush()
        return row.id


@pytest.mark.parametrize("raw", LEGACY_BODIES.values(), ids=LEGACY_BODIES.keys())
def test_a_row_stored_before_the_checks_renders_everywhere(any_db_app, raw):
    client = signed_in_client(any_db_app)
    row_id = insert_row(raw)
    answers = fetch_everything(client, row_id)
    page = answers[f"/deliveries/{row_id}"]
    assert len(page) < 300_000
    assert answers[f"/api/deliveries/{row_id}"]["id"] == row_id


def test_lone_surrogates_are_shown_as_the_escapes_that_were_sent(app):
    client = signed_in_client(app)
    row_id = insert_row(LEGACY_BODIES["lone surrogate in a key"])
    answers = fetch_everything(client, row_id)
    assert answers[f"/api/deliveries/{row_id}"]["payload"] == {
        "type": "DeliveryCallback",
        "\\udc00": {"\\ud83d": "\\udfff"},
    }
    page = html.unescape(answers[f"/deliveries/{row_id}"])
    assert '"\\udc00": {\n    "\\ud83d": "\\udfff"' in page


def test_nan_and_infinities_are_shown_as_their_names(app):
    client = signed_in_client(app)
    row_id = insert_row(LEGACY_BODIES["NaN and infinities"])
    payload = fetch_everything(client, row_id)[f"/api/deliveries/{row_id}"]["payload"]
    assert payload == {
        "type": "X",
        "momment": "NaN",
        "a": ["Infinity", "-Infinity"],
        "b": "Infinity",
    }


def test_levels_past_the_limit_are_replaced_by_a_note(app):
    client = signed_in_client(app)
    # 100 levels: deep past the limit, yet within what json.loads reads under pytest's stack.
    row_id = insert_row('{"type": "X", "a": ' + "[" * 99 + "]" * 99 + "}")
    answers = fetch_everything(client, row_id)
    value = answers[f"/api/deliveries/{row_id}"]["payload"]["a"]
    for _level in range(MAX_DEPTH - 1):  # the body itself is the first level
        (value,) = value
    assert value == "(nested more than 32 levels deep: not shown)"
    page = answers[f"/deliveries/{row_id}"]
    assert "the deeper levels are not shown" in page
    assert len(page) < 30_000


def test_a_body_that_does_not_parse_is_shown_as_text(app):
    client = signed_in_client(app)
    row_id = insert_row(LEGACY_BODIES["too deep to parse"])
    answers = fetch_everything(client, row_id)
    assert answers[f"/api/deliveries/{row_id}"]["payload"].startswith('{"type": "X", "a": [[[')
    assert (
        "is not a JSON object (or is nested too deeply to read)" in answers[f"/deliveries/{row_id}"]
    )


def test_a_huge_body_is_cut_on_its_page_with_a_note(app):
    client = signed_in_client(app)
    row_id = insert_row(LEGACY_BODIES["wide at the depth limit"])
    answers = fetch_everything(client, row_id)
    assert "Only the first 200,000 characters are shown." in answers[f"/deliveries/{row_id}"]


@pytest.mark.sqlite_only  # PostgreSQL's BIGINT column refuses such a value outright
def test_a_stamp_that_is_not_an_integer_is_left_out(app):
    # SQLite keeps whatever a hand-written row puts in an integer column.
    client = signed_in_client(app)
    infinite = insert_row('{"type": "X", "n": 1}', momment=math.inf)
    textual = insert_row('{"type": "X", "n": 2}')
    with db.writing() as session:
        session.execute(
            text("UPDATE deliveries SET momment = 'soon' WHERE id = :id"), {"id": textual}
        )
    for row_id in (infinite, textual):
        assert fetch_everything(client, row_id)[f"/api/deliveries/{row_id}"]["momment"] is None


# Text from all of Unicode; some bodies also get lone surrogates, which json.dumps writes
# as \uXXXX escapes, as a careless sender would.
CLEAN_TEXT = st.text(max_size=12)
ANY_TEXT = CLEAN_TEXT | st.builds(
    lambda before, lone, after: before + lone + after,
    st.text(max_size=4),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.text(max_size=4),
)
# Some bodies get NaN and the infinities too, which json.dumps writes as NaN and Infinity.
FINITE = st.floats(allow_nan=False, allow_infinity=False)
KNOWN_KEYS = st.sampled_from(["phone", "messageId", "zaapId", "momment", "ids", "error", "status"])
KNOWN_TYPES = st.sampled_from(["DeliveryCallback", "MessageStatusCallback", "ReceivedCallback"])


def json_values(text, floats):
    """Any JSON value built from these strings and numbers."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | floats | text,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)
        ),
        max_leaves=8,
    )


@st.composite
def callbacks(draw) -> dict:
    """A JSON object with a ``type``, any fields, and one of them wrapped many levels deep."""
    # Each body may hold lone surrogates, and non-finite numbers, or not: about half are
    # bodies the webhook must store.
    text = ANY_TEXT if draw(st.booleans()) else CLEAN_TEXT
    values = json_values(text, st.floats() if draw(st.booleans()) else FINITE)
    payload = draw(st.dictionaries(KNOWN_KEYS | text, values, max_size=5))
    payload["type"] = draw(KNOWN_TYPES | text)
    value = draw(values)
    for _level in range(draw(st.integers(0, MAX_DEPTH + 4))):
        value = [value]
    payload["deep"] = value
    return payload


def breaks_a_rule(value, depth: int = 0) -> bool:
    """Whether a webhook must refuse a body holding ``value`` at ``depth`` (the body is 1)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return any(0xD800 <= ord(character) <= 0xDFFF for character in value)
    if isinstance(value, list):
        return depth + 1 > MAX_DEPTH or any(breaks_a_rule(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return depth + 1 > MAX_DEPTH or any(
            breaks_a_rule(key, depth) or breaks_a_rule(item, depth + 1)
            for key, item in value.items()
        )
    return False


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=callbacks())
def test_every_callback_the_webhook_stores_renders_everywhere(viewer, webhook_path, payload):
    response = viewer.post(webhook_path, data=json.dumps(payload), content_type="application/json")
    assert response.status_code in {200, 400}, response.get_data(as_text=True)
    event(f"answered {response.status_code}")  # --hypothesis-show-statistics: both happen
    answer = strict_json(response.get_data(as_text=True))
    if breaks_a_rule(payload):
        assert response.status_code == 400, payload
    if response.status_code == 400:
        assert answer["error"]
        return
    detail = fetch_everything(viewer, answer["id"])[f"/api/deliveries/{answer['id']}"]
    assert detail["payload"] == payload
