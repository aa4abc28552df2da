"""The search parameter reader: every value gives a search or a message naming its parameter."""

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import deliveries
from dashboard.extensions import db
from dashboard.phones import PhoneQuery
from dashboard.search_params import BadParameter, parse

from .support import SEED, store

NAMES = ("phone", "type", "failed", "instance", "since", "until", "limit", "before", "after")


def test_a_full_search_is_read():
    search = parse(
        {
            "phone": "+55 44 99999-9999",
            "type": "DeliveryCallback",
            "failed": "1",
            "instance": "instance.id",
            "since": "2026-11-01",
            "until": "2026-11-25",
            "limit": "20",
            "before": "100",
        }
    )
    assert search.filters.phone == PhoneQuery("exact", "5544999999999")
    assert search.filters.failed is True
    assert search.filters.since == datetime(2026, 11, 1, tzinfo=UTC)
    # A date in "until" includes that whole day.
    assert search.filters.until == datetime(2026, 11, 26, tzinfo=UTC)
    assert (search.limit, search.before, search.after) == (20, 100, None)


def test_an_offset_sent_without_escaping_its_plus_still_reads():
    # "+03:00" in a query string that did not escape "+" arrives as " 03:00".
    search = parse({"since": "2026-11-25T14:30:00 03:00"})
    assert search.filters.since == datetime(2026, 11, 25, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ({"phone": "abc"}, "phone"),
        ({"failed": "maybe"}, "failed"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-25", "until": "2026-11-01"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"before": "-1"}, "before"),
        ({"after": "2147483648"}, "after"),
        ({"before": "1", "after": "2"}, "after"),
        ({"instance": "a\x00b"}, "instance"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
    ],
)
def test_a_bad_value_names_its_parameter(args, name):
    with pytest.raises(BadParameter) as caught:
        parse(args)
    assert caught.value.name == name
    assert caught.value.message


VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["", "1", "0", "2026-11-25", "2026-11-25T10:00:00Z", "9" * 25, "+55", "a\x00b"]
    ),
    st.integers(-5, 10**12).map(str),
)


@given(st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=5))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_property_any_query_is_a_search_the_database_runs_or_a_message(any_db_app, args):
    with db.reading() as session:
        empty = deliveries.newest_id(session) == 0
    if empty:
        store(SEED)  # a database that holds a row, not an empty one
    try:
        search = parse(args)
    except BadParameter as exc:
        assert exc.name in NAMES
        return
    with db.reading() as session:
        deliveries.search(
            session, search.filters, search.limit, before=search.before, after=search.after
        )
        deliveries.count_matches(session, search.filters, cap=10)
