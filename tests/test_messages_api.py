"""GET /api/messages and /api/messages/<id>, and each callback's messageState."""

import re

import pytest

from .support import signed_in_client, store_all
from .test_messages import reply, sent, status
from .test_search_messages import statements_run

REPLY = reply()


@pytest.fixture
def api(app):
    """A signed-in viewer's client, asking for English."""
    return signed_in_client(app)


def test_a_message_answers_with_its_steps_verdict_and_evidence(api):
    stored = store_all([sent(), status("SENT", 1), status("RECEIVED", 2), status("READ", 63)])
    listing = api.get("/api/messages?phone=44 99999-9999")
    assert listing.status_code == 200, listing.get_data(as_text=True)
    (item,) = listing.json["items"]
    assert listing.json["next"] is None
    assert item["state"] == "read"
    assert [step["state"] for step in item["steps"]] == ["queued", "sent", "received", "read"]
    assert item["steps"][-1]["at"] == "2026-05-01T12:01:03Z"
    assert item["verdict"] == "Read at 2026-05-01 12:01 UTC."
    assert item["callbacks"] == [recorded.id for recorded in stored]
    assert item["failure"] is None
    assert api.get(f"/api/messages/{item['id']}").json == item


def test_a_pasted_zaap_id_or_message_id_finds_its_message(api):
    store_all([sent("M1"), sent("M2")])
    by_zaap = api.get("/api/messages?messageId=Z-M2").json["items"]
    by_message = api.get("/api/messages?messageId=M2").json["items"]
    assert [m["messageId"] for m in by_zaap] == [m["messageId"] for m in by_message] == ["M2"]


def test_a_failed_message_says_why_in_plain_words_in_the_readers_language(api, app):
    store_all([sent(error="Phone number does not exist")])
    (item,) = api.get("/api/messages?state=failed").json["items"]
    assert item["failure"]["category"] == item["failureCategory"] == "invalid-number"
    assert item["verdict"] == "Failed: Invalid number."
    portuguese = signed_in_client(app, "paula")
    answer = portuguese.get(f"/api/messages/{item['id']}", headers={"Accept-Language": "pt-BR"})
    assert answer.json["verdict"].startswith("Falhou")
    assert answer.json["verdict"] != item["verdict"]


def test_the_verdict_is_plain_text_with_its_times_in_utc(api):
    store_all([sent(error="<b>Unknown</b> & odd"), sent("M2"), REPLY])
    failed, queued = (
        api.get(f"/api/messages?messageId={pk}").json["items"][0]["verdict"] for pk in ("M1", "M2")
    )
    # Z-API's own words as they came: JSON is no HTML, nothing in it is escaped.
    assert failed.startswith("Failed: <b>Unknown</b> & odd. The customer replied at ")
    assert re.fullmatch(
        r"Handed to WhatsApp at 2026-05-01 12:00 UTC, not on the phone yet: .+\. "
        r"The customer replied at \d{4}-\d\d-\d\d \d\d:\d\d UTC\.",
        queued,
    )
    assert "<time" not in queued


def test_a_delivery_without_statuses_warns_it_is_not_proof_and_replies_count(api):
    store_all([sent(), REPLY])
    (item,) = api.get("/api/messages").json["items"]
    assert item["state"] == "queued"
    assert "does not mean the customer received it" in item["verdict"]
    assert "The customer replied at" in item["verdict"]
    assert len(item["replies"]) == 1


def test_each_callback_carries_the_state_of_its_message(api):
    store_all([sent(), status("RECEIVED", 2), REPLY])
    items = api.get("/api/deliveries").json["items"]
    assert [item["messageState"] for item in items] == [None, "received", "received"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("state=lost", "state"), ("before=x", "before"), ("limit=0", "limit"), ("phone=abc", "phone")],
)
def test_bad_parameters_get_a_400_naming_them(api, query, parameter):
    answer = api.get(f"/api/messages?{query}")
    assert answer.status_code == 400
    assert answer.json["parameter"] == parameter


def test_an_unknown_message_is_a_404_that_says_so(api):
    answer = api.get("/api/messages/999")
    assert answer.status_code == 404
    assert "No message has the id 999" in answer.json["error"]


def test_messages_need_a_sign_in(app):
    assert app.test_client().get("/api/messages").status_code == 401


def test_messages_are_found_by_their_failure_category(api):
    store_all(
        [
            sent("M1", error="Phone number does not exist"),
            sent("M2", error="Timeout on send message"),
            sent("M3", error="Timeout on send message"),
            status("RECEIVED", 2, "M3"),
            sent("M4"),
        ]
    )

    def found(query: str) -> list[str]:
        answer = api.get(f"/api/messages?{query}")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return sorted(item["messageId"] for item in answer.json["items"])

    # A failure that gave way to a receipt keeps its category, but is no longer failed.
    assert found("category=timeout") == ["M2", "M3"]
    assert found("state=failed&category=timeout") == ["M2"]
    assert found("state=failed&category=INVALID-NUMBER") == ["M1"]
    assert found("category=media") == []
    assert found("category=") == ["M1", "M2", "M3", "M4"]


def test_an_unknown_category_is_refused_in_the_readers_language(api, app):
    answer = api.get("/api/messages?state=failed&category=bogus")
    assert answer.status_code == 400
    assert answer.json["error"].startswith("category: Use one of: shadow-ban, permission,")
    assert answer.json["error"].endswith(", other.")
    portuguese = signed_in_client(app, "paula")
    refused = portuguese.get("/api/messages?category=bogus", headers={"Accept-Language": "pt-BR"})
    assert refused.status_code == 400
    assert refused.json["error"].startswith("category: Use um destes: shadow-ban,")


def test_a_page_of_messages_reads_their_replies_and_callbacks_in_a_statement_each(api):
    stored = store_all([*(sent(f"M{n}") for n in range(1, 11)), reply()])
    sent_ids = {f"M{n}": recorded.id for n, recorded in enumerate(stored[:10], start=1)}

    def statements(limit: int) -> int:
        with statements_run() as run:
            items = api.get(f"/api/messages?limit={limit}").json["items"]
        assert len(items) == limit
        assert all(item["replies"] for item in items)  # the reply came after every one
        # Each message's one callback: its own DeliveryCallback.
        assert [item["callbacks"] for item in items] == [
            [sent_ids[item["messageId"]]] for item in items
        ]
        return len(run)

    assert statements(2) == statements(10)
