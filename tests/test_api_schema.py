"""The JSON API against its own OpenAPI description, with schemathesis on the real app."""

import json
from importlib import resources

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from dashboard.accounts import tokens as api_tokens
from dashboard.extensions import db

from .support import FAILED, SEED, STATUS, english_client, make_user, store_all

# Enough to find odd inputs, few enough to keep the whole file under half a minute.
EXAMPLES = 100
ALL_CHECKS = list(HealthCheck)
# The API reads parameters as the search form sends them, so two checks do not apply: a
# schema-valid value may still be refused (a phone with no digits, until before since),
# and some schema-violating ones are fine (an empty field means "any", failed=yes).
# Every refusal is tested one by one in test_api.py.
LENIENT = [positive_data_acceptance, negative_data_rejection]
GROUP = {**SEED, "phone": "120363019502650977-group", "participantPhone": "5511988887777"}


@pytest.fixture
def stored(any_db_app) -> list[int]:
    """A few stored callbacks for the API to return: a send, a failure, a status, a group."""
    return [recorded.id for recorded in store_all([SEED, FAILED, STATUS, GROUP])]


@pytest.fixture
def bearer(any_db_app, stored):
    """A real token of a real user."""
    user = make_user("ana", "viewer")
    with db.writing() as transaction:
        _token, secret = api_tokens.create(transaction, user, "schemathesis")
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode))
@pytest.mark.parametrize(
    "label", ["GET /api/deliveries", "GET /api/deliveries/{id}", "GET /api/live/check"]
)
def test_api_matches_its_description(any_db_app, bearer, label, mode):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", any_db_app, headers=bearer)
    operation = schema.find_operation_by_label(label)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=ALL_CHECKS)
    def conforms(case):
        case.call_and_validate(headers=bearer, excluded_checks=LENIENT)

    conforms()


def test_every_stored_callback_matches_its_description(any_db_app, bearer, stored):
    # Random ids rarely hit a stored row, so the 200 answers are checked here one by one.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", any_db_app, headers=bearer)
    operation = schema.find_operation_by_label("GET /api/deliveries/{id}")
    for delivery_id in stored:
        case = operation.Case(path_parameters={"id": delivery_id})
        assert case.call_and_validate(headers=bearer, excluded_checks=LENIENT).status_code == 200


def parameter(name: str) -> dict:
    """What the description says of a query parameter of ``GET /api/deliveries``."""
    spec = json.loads(resources.files("dashboard").joinpath("openapi.json").read_text())
    parameters = spec["paths"]["/api/deliveries"]["get"]["parameters"]
    return next(each for each in parameters if each["name"] == name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("since", ""),
        ("until", ""),
        ("since", "2026-11-25"),
        ("until", "2026-11-25T14:30:00Z"),
        ("since", "yesterday"),
        ("before", "0"),
        ("after", "0"),
        ("before", "2147483648"),
    ],
)
def test_the_description_and_the_api_agree_on_a_value(any_db_app, bearer, name, value):
    schema = parameter(name)["schema"]
    typed = int(value) if schema.get("type") == "integer" else value
    valid = jsonschema_rs.validator_for(schema, validate_formats=True).is_valid(typed)
    answer = english_client(any_db_app).get(
        "/api/deliveries", query_string={name: value}, headers=bearer
    )
    assert answer.status_code == (200 if valid else 400), (name, value, valid)


def test_both_cursors_are_refused_as_described(any_db_app, bearer):
    answer = any_db_app.test_client().get("/api/deliveries?before=0&after=0", headers=bearer)
    assert answer.status_code == 400
    assert answer.json["parameter"] == "after"
    assert "before=0&after=0" in parameter("after")["description"]
