"""The JSON API: listing, filters, paging, bad parameters, one callback, sign-in."""

import pytest

from .support import FAILED, SEED, STATUS, make_user, sign_in, signed_in_client, store, store_all

DELIVERY_FIELDS = {
    "id",
    "receivedAt",
    "type",
    "instanceId",
    "phone",
    "messageId",
    "zaapId",
    "messageState",
    "momment",
    "error",
    "errorCode",
    "status",
    "isGroup",
    "participant",
    "fromMe",
    "phoneDisplay",
    "receiveCount",
}


@pytest.fixture
def api(any_db_app):
    """A test client signed in (session cookie) as the viewer "vera", on SQLite and PostgreSQL."""
    return signed_in_client(any_db_app)


@pytest.fixture
def sqlite_api(app, client):
    """The same on SQLite only, for checks that do not depend on the database."""
    make_user("vera", "viewer")
    assert sign_in(client, "vera").status_code == 302
    return client


def callback(number: int, **fields) -> dict:
    """A distinct DeliveryCallback (its own message id)."""
    return {**SEED, "messageId": f"MSG{number:04d}", "zaapId": f"ZAAP{number:04d}", **fields}


def ids(response) -> list[int]:
    """The ids of the items of a listing, checking the answer on the way."""
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["id"] for item in response.json["items"]]


def test_listing_is_newest_first_in_the_public_shape(api):
    seed, failed, status = (recorded.id for recorded in store_all([SEED, FAILED, STATUS]))
    response = api.get("/api/deliveries")
    assert ids(response) == [status, failed, seed]
    assert response.json["next"] is None
    for item in response.json["items"]:
        assert set(item) == DELIVERY_FIELDS
        assert item["receivedAt"].endswith("Z")
    first_failed = response.json["items"][1]
    assert first_failed["error"] == "Phone number does not exist"
    assert first_failed["momment"] == 1777494091684
    assert first_failed["phoneDisplay"] == "+55 44 9999-9999"


def test_filters_combine(api):
    seed, failed, status = (recorded.id for recorded in store_all([SEED, FAILED, STATUS]))
    other = store(callback(1, instanceId="other.instance")).id
    assert ids(api.get("/api/deliveries?type=MessageStatusCallback")) == [status]
    assert ids(api.get("/api/deliveries?failed=1")) == [failed]
    assert ids(api.get("/api/deliveries?failed=true&type=MessageStatusCallback")) == []
    assert ids(api.get("/api/deliveries?failed=0")) == [other, status, failed, seed]
    assert ids(api.get("/api/deliveries?instance=other.instance")) == [other]
    assert ids(api.get("/api/deliveries?since=2999-01-01")) == []
    assert ids(api.get("/api/deliveries?until=2000-01-01")) == []
    assert ids(api.get("/api/deliveries?since=2000-01-01T00:00:00Z&until=2999-01-01")) == [
        other,
        status,
        failed,
        seed,
    ]


@pytest.mark.parametrize(
    "typed",
    ["+55 (44) 9 9999-9999", "55 44 99999-9999", "044 9999-9999", "4499999999", "9999-9999"],
)
def test_phone_in_any_format_finds_both_forms_of_the_number(api, typed):
    # The same mobile stored with (13 digits) and without (12 digits) the ninth digit.
    twelve = store(callback(1, phone="554499999999")).id
    thirteen = store(callback(2, phone="5544999999999")).id
    store(callback(3, phone="5511988887777"))
    assert ids(api.get("/api/deliveries", query_string={"phone": typed})) == [thirteen, twelve]


def test_paging_follows_next_until_null_and_ignores_new_rows(api):
    stored = [recorded.id for recorded in store_all([callback(n) for n in range(7)])]
    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 3} if cursor is None else {"limit": 3, "before": cursor}
        response = api.get("/api/deliveries", query_string=query)
        seen += ids(response)
        pages += 1
        if pages == 1:
            store(callback(99))  # arrives while a client pages back: pages stay put
        cursor = response.json["next"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(stored, reverse=True)


def test_after_returns_the_page_in_front(api):
    stored = [recorded.id for recorded in store_all([callback(n) for n in range(5)])]
    response = api.get("/api/deliveries", query_string={"limit": 2, "after": stored[0]})
    assert ids(response) == [stored[2], stored[1]]
    assert response.json["newer"] == stored[2]


@pytest.mark.parametrize("limit", ["1", "500"])
def test_limit_accepts_its_bounds(sqlite_api, limit):
    store_all([callback(n) for n in range(3)])
    response = sqlite_api.get(f"/api/deliveries?limit={limit}")
    assert len(ids(response)) == min(int(limit), 3)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"limit": "9" * 40}, "limit"),
        ({"phone": "abc"}, "phone"),
        ({"phone": "12"}, "phone"),
        ({"phone": "9999\x00"}, "phone"),
        ({"type": "Delivery\x00Callback"}, "type"),
        ({"instance": "\x00"}, "instance"),
        ({"failed": "maybe"}, "failed"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"since": "2026-11-26", "until": "2026-11-25"}, "until"),
        # Valid text, but one hour before year 1 begins in UTC.
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"until": "9999-12-31"}, "until"),
        ({"before": "-1"}, "before"),
        ({"before": "2147483648"}, "before"),
        ({"after": "x"}, "after"),
        ({"before": "5", "after": "3"}, "after"),
    ],
)
def test_every_bad_parameter_gets_400_naming_it(sqlite_api, query, parameter):
    response = sqlite_api.get("/api/deliveries", query_string=query)
    assert response.status_code == 400
    assert response.json["parameter"] == parameter
    assert response.json["error"].startswith(f"{parameter}: ")


def test_one_callback_with_its_payload_and_related_ids(api):
    seed, failed, _status = (recorded.id for recorded in store_all([SEED, FAILED, STATUS]))
    response = api.get(f"/api/deliveries/{failed}")
    assert response.status_code == 200
    body = response.json
    assert set(body) >= DELIVERY_FIELDS
    assert body["id"] == failed
    assert body["payload"] == FAILED
    assert body["related"] == [seed]  # the same messageId and zaapId


@pytest.mark.parametrize(
    "path",
    [
        "/api/deliveries/999",
        "/api/deliveries/0",
        "/api/deliveries/-1",
        "/api/deliveries/abc",
        "/api/deliveries/2147483647",
        "/api/deliveries/2147483648",
        "/api/deliveries/" + "9" * 60,
    ],
)
def test_missing_or_odd_id_is_json_404(api, path):
    store(SEED)
    response = api.get(path)
    assert response.status_code == 404
    assert response.is_json
    assert response.json["error"]


@pytest.mark.parametrize(
    "path", ["/api/deliveries", "/api/deliveries/1", "/api/openapi.json", "/api/deliveries/abc"]
)
def test_without_sign_in_the_api_answers_401_json(app, client, path):
    store(SEED)
    response = client.get(path)
    # An id that is no id is not found whoever asks; everything else needs a sign-in.
    expected = 404 if path.endswith("abc") else 401
    assert response.status_code == expected
    assert response.is_json
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "Sign in first" in response.json["error"]


def test_other_methods_are_refused_in_json(sqlite_api):
    for method in ("POST", "DELETE"):
        response = sqlite_api.open("/api/deliveries/1", method=method)
        assert response.status_code == 405
        assert response.is_json
        assert response.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_openapi_document_describes_every_parameter(sqlite_api):
    response = sqlite_api.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.json
    assert document["openapi"].startswith("3.")
    listing = document["paths"]["/api/deliveries"]["get"]
    documented = {parameter["name"] for parameter in listing["parameters"]}
    assert documented == {
        "phone",
        "type",
        "failed",
        "instance",
        "since",
        "until",
        "limit",
        "before",
        "after",
    }
    assert set(listing["responses"]) == {"200", "400", "401"}
    delivery = document["components"]["schemas"]["Delivery"]
    assert set(delivery["required"]) == DELIVERY_FIELDS
    assert "/api/deliveries/{id}" in document["paths"]
