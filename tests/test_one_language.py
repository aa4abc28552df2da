"""Every 4xx message of the webhook and the API is wholly in one language, pt_BR or en."""

import json
import re

import pytest

from .support import SEED, english_client, make_user, sign_in

# One body for each thing Python's json module can say is wrong with a text.
NOT_JSON = [
    b"",  # Expecting value
    b"{",  # Expecting property name enclosed in double quotes
    b'{"a" 1}',  # Expecting ':' delimiter
    b"[1 2]",  # Expecting ',' delimiter
    b"{} x",  # Extra data
    b'"abc',  # Unterminated string starting at
    b'"a\x01"',  # Invalid control character at
    b'"\\q"',  # Invalid \escape
    b'"\\u12"',  # Invalid \uXXXX escape
    b'{"type": "X", "n": ' + b"9" * 5000 + b"}",  # Exceeds the limit (4300 digits)...
]
NOT_A_CALLBACK = [
    b"[]",
    b'"text"',
    b"1",
    b"true",
    b"null",
    b'{"type": "X", "n": NaN}',
    b'{"type": "X", "n": 1e999}',
    b"\xff",
    b'{"phone": "554499999999"}',
    json.dumps({"type": "X" * 65}).encode(),
    json.dumps({"type": "X", "deep": json.loads("[" * 40 + "]" * 40)}).encode(),
    json.dumps({**SEED, "pad": "x" * 70_000}).encode(),
]
API_PATHS = [
    "/api/deliveries?phone=abc",
    "/api/deliveries?phone=1",
    "/api/deliveries?since=x",
    "/api/deliveries?limit=0",
    "/api/deliveries?failed=maybe",
    "/api/deliveries?before=-1",
    "/api/deliveries?before=1&after=2",
    "/api/deliveries?since=2026-01-02&until=2026-01-01",
    "/api/deliveries?type=%00",
    "/api/messages?state=nope",
    "/api/deliveries/99",
    "/api/messages/99",
    "/api/nothing",
    "/api/live/check",
]
# Words both languages write the same: names from the protocols, the API's parameters and
# values, and the bits of a sender's own body that a message quotes back.
SHARED = {
    *("JSON", "UTF", "KiB", "NaN", "NUL", "Infinity", "null", "array", "arrays", "string"),
    *("escape", "API", "callback", "callbacks", "type", "DeliveryCallback", "Content", "Type"),
    *("application", "json", "text", "plain", "Authorization", "Bearer", "token", "phone"),
    *("since", "until", "limit", "failed", "before", "after", "state", "queued", "sent"),
    *("received", "read", "played", "origin", "http", "https", "dashboard", "example", "com"),
    *("host", "GET", "HEAD", "OPTIONS", "POST", "Use", "true", "false"),
}
WORD = re.compile(r"[A-Za-z]{3,}")


def english_words_in(portuguese: str, english: str) -> set[str]:
    """The words of the English answer that the Portuguese one repeats, shared words aside."""
    words = [{word.lower() for word in WORD.findall(text)} for text in (english, portuguese)]
    return (words[0] & words[1]) - {word.lower() for word in SHARED}


def answers(client, send) -> tuple[int, str, str]:
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pt-BR"
    portuguese = send()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    english = send()
    assert portuguese.status_code == english.status_code
    return portuguese.status_code, portuguese.json["error"], english.json["error"]


@pytest.mark.parametrize("body", NOT_JSON + NOT_A_CALLBACK)
def test_each_webhook_refusal_is_in_one_language(app, webhook_path, body):
    client = app.test_client()
    status, portuguese, english = answers(
        client, lambda: client.post(webhook_path, data=body, content_type="application/json")
    )
    assert 400 <= status < 500
    assert portuguese != english
    assert not english_words_in(portuguese, english), (portuguese, english)


@pytest.mark.parametrize("body", NOT_JSON)
def test_every_json_problem_python_names_has_words_of_ours(app, webhook_path, body):
    client = english_client(app)
    answer = client.post(webhook_path, data=body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json["error"].startswith("The body is not valid JSON: ")
    assert "a syntax error" not in answer.json["error"]  # Python's words all have ours


def test_invalid_json_is_explained_in_portuguese(app, webhook_path):
    client = app.test_client()
    answer = client.post(webhook_path, data=b'{"a" 1}', content_type="application/json")
    assert answer.json["error"] == (
        'O corpo não é um JSON válido: eram esperados ":" depois do nome de um campo '
        "na linha 1, coluna 6."
    )
    assert client.post(webhook_path, data=b"1", content_type="application/json").json == {
        "error": "O corpo deve ser um objeto JSON, mas é um JSON do tipo número."
    }


@pytest.mark.parametrize("content_type", ["text/plain", ""])
def test_the_content_type_refusal_is_in_one_language(app, webhook_path, content_type):
    client = app.test_client()
    status, portuguese, english = answers(
        client,
        lambda: client.post(webhook_path, data=b"{}", headers={"Content-Type": content_type}),
    )
    assert status == 415
    assert not english_words_in(portuguese, english), (portuguese, english)


def test_each_api_refusal_is_in_one_language(app):
    client = app.test_client()
    for send in (
        lambda: client.get("/api/deliveries"),
        lambda: client.get("/api/deliveries", headers={"Authorization": "Bearer nope"}),
    ):
        status, portuguese, english = answers(client, send)
        assert status == 401
        assert not english_words_in(portuguese, english), (portuguese, english)
    make_user("ana", "admin")
    sign_in(client, "ana")
    for path in [*API_PATHS, "POST /api/deliveries"]:
        method, _, url = path.rpartition(" ")
        status, portuguese, english = answers(
            client, lambda url=url, method=method: client.open(url, method=method or "GET")
        )
        assert 400 <= status < 500, path
        assert portuguese != english, path
        assert not english_words_in(portuguese, english), (path, portuguese, english)
