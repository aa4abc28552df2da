"""Statuses, message states and failure categories in the reader's words (dashboard/labels.py)."""

import html
import json
import re

import pytest
from flask_babel import force_locale

from dashboard import labels
from dashboard.messages import failures, states

from .support import SEED, STATUS, signed_in_client, store

# MessageStatusCallback's, ReceivedCallback's and PresenceChatCallback's documented statuses.
DOCUMENTED = [
    *("PENDING", "SENT", "RECEIVED", "DELIVERY_ACK", "READ", "READ_BY_ME", "PLAYED"),
    *("MESSAGE_RECEIVED", "AVAILABLE", "UNAVAILABLE", "COMPOSING", "RECORDING", "PAUSED"),
]


def in_language(app, language, function, value):
    with app.test_request_context(), force_locale(language):
        return function(value)


@pytest.mark.parametrize(
    ("status", "portuguese", "english"),
    [
        ("SENT", "Enviada", "Sent"),
        ("RECEIVED", "Recebida", "Received"),
        ("READ", "Lida", "Read"),
        ("READ_BY_ME", "Lida por mim", "Read by me"),
        ("PLAYED", "Reproduzida", "Played"),
        ("DELIVERY_ACK", "Entregue", "Delivered"),
        ("COMPOSING", "Digitando", "Typing"),
        ("AVAILABLE", "On-line", "Online"),
    ],
)
def test_a_status_in_portuguese_and_english(app, status, portuguese, english):
    assert in_language(app, "pt_BR", labels.status_label, status) == portuguese
    assert in_language(app, "en", labels.status_label, status) == english


def test_every_documented_status_has_a_portuguese_word(app):
    with app.test_request_context(), force_locale("pt_BR"):
        words = labels.status_labels()
    assert sorted(words) == sorted(DOCUMENTED)
    with app.test_request_context(), force_locale("en"):
        english = labels.status_labels()
    # Translated: no Portuguese word is the English one (On-line is not Online).
    assert all(words[status] != english[status] for status in DOCUMENTED)


@pytest.mark.parametrize("value", ["SOMETHING_NEW", "Read", "constructor", "<b>", ""])
def test_an_unknown_status_state_or_category_shows_as_it_came(app, value):
    for function in (labels.status_label, labels.state_label, labels.category_label):
        assert in_language(app, "pt_BR", function, value) == value
    assert in_language(app, "pt_BR", labels.status_label, None) == ""


def test_every_state_has_a_portuguese_word(app):
    words = {state: in_language(app, "pt_BR", labels.state_label, state) for state in states.STATES}
    assert words == {
        "queued": "Na fila",
        "sent": "Enviada",
        "received": "Entregue",
        "read": "Lida",
        "played": "Reproduzida",
        "failed": "Falhou",
    }
    assert in_language(app, "en", labels.state_label, "received") == "Delivered"


def test_every_failure_category_has_its_translated_label(app):
    for category in failures.categories():
        with app.test_request_context(), force_locale("pt_BR"):
            assert labels.category_label(category) == failures.translated(category).label
    assert in_language(app, "pt_BR", labels.category_label, "invalid-number") == "Número inválido"
    assert in_language(app, "en", labels.category_label, "invalid-number") == "Invalid number"


@pytest.fixture
def portuguese(app):
    """A client signed in as "ana", asking for Portuguese pages."""
    client = signed_in_client(app, "ana", "admin")
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pt-BR"
    return client


def status_cells(page: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'data-field="status">([^<]*)<', page)]


def test_search_rows_and_the_detail_page_show_statuses_in_portuguese(portuguese):
    store(SEED)
    read = store({**STATUS, "ids": [SEED["messageId"]]}).id
    store({**STATUS, "status": "SOMETHING_NEW", "ids": ["other"]})
    page = portuguese.get("/search?phone=554499999999&view=callbacks").get_data(as_text=True)
    assert sorted(status_cells(page)) == ["Lida", "SOMETHING_NEW"]
    detail = portuguese.get(f"/deliveries/{read}").get_data(as_text=True)
    # The word, and Z-API's own beside it.
    assert '<dd>Lida <span class="as-sent">(<code>READ</code>)</span></dd>' in detail


def test_the_live_feed_gets_its_status_words_from_the_page(portuguese, app):
    page = portuguese.get("/?view=callbacks").get_data(as_text=True)
    found = re.search(r"<template id=\"delivery-row\" data-status-labels='([^']*)'>", page)
    words = json.loads(html.unescape(found.group(1)))
    with app.test_request_context(), force_locale("pt_BR"):
        assert words == labels.status_labels()
    assert words["READ"] == "Lida"
