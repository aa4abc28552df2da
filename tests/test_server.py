"""Against a real `zapi-dashboard serve` (gunicorn, two workers) in a subprocess."""

import json
import threading

import pytest
import requests

from .support import FAILED, SEED, TOKEN, query

pytestmark = pytest.mark.server


def rows(server, where="1=1", **params):
    return query(server.data_dir, f"SELECT * FROM deliveries WHERE {where}", **params)


ENGLISH = {"Accept-Language": "en"}


def post(url, payload, **kwargs):
    return requests.post(url, json=payload, timeout=30, headers=ENGLISH, **kwargs)


def test_seed_payload_is_committed_before_the_answer(server):
    response = post(server.webhook_url, {**SEED, "messageId": "seed-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["duplicate"] is False
    stored = rows(server, "id = :id", id=body["id"])
    assert len(stored) == 1


def test_failed_send_keeps_its_error_text(server):
    response = post(server.webhook_url, {**FAILED, "messageId": "failed-1"})
    (row,) = rows(server, "id = :id", id=response.json()["id"])
    assert "Phone number does not exist" in row


def test_a_repeat_is_not_stored_twice(server):
    payload = {**SEED, "messageId": "repeat-1"}
    first = post(server.webhook_url, payload).json()
    again = post(server.webhook_url, payload).json()
    assert again == {"id": first["id"], "duplicate": True}
    assert len(rows(server, "message_id = :id", id="repeat-1")) == 1


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
        ({"data": b"{nope", "headers": {"Content-Type": "application/json"}}, 400, "JSON"),
        ({"data": b"[]", "headers": {"Content-Type": "application/json"}}, 400, "object"),
        ({"data": b'{"a": 1}', "headers": {"Content-Type": "application/json"}}, 400, '"type"'),
        (
            {
                "data": b"{" + b" " * (64 * 1024) + b"}",
                "headers": {"Content-Type": "application/json"},
            },
            413,
            "64 KiB",
        ),
    ],
)
def test_bad_input_gets_its_status_and_message(server, kwargs, status, message):
    kwargs["headers"] = {**kwargs["headers"], **ENGLISH}
    response = requests.post(server.webhook_url, timeout=30, **kwargs)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_wrong_token_and_wrong_method(server):
    wrong = post(f"{server.base_url}/webhooks/{'x' * 40}", SEED)
    assert wrong.status_code == 404
    assert wrong.json() == {"error": "Not found."}
    method = requests.get(server.webhook_url, timeout=30, headers=ENGLISH)
    assert method.status_code == 405
    assert method.headers["Allow"] == "POST"


def test_fifty_concurrent_posts_are_all_committed_once(server):
    results = [None] * 50

    def send(index):
        results[index] = post(server.webhook_url, {**SEED, "messageId": f"burst-{index}"})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r.status_code for r in results] == [200] * 50
    assert len({r.json()["id"] for r in results}) == 50
    assert len(rows(server, "message_id LIKE 'burst-%'")) == 50
    assert "database is locked" not in server.log()


def test_health_check_answers_over_http(server):
    response = requests.get(f"{server.base_url}/healthz", timeout=30)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_the_token_appears_only_in_the_start_banner(server):
    post(server.webhook_url, {**SEED, "messageId": "log-check"})
    log = server.log()
    assert "/webhooks/<token>" in log  # the access log line, redacted
    assert log.count(TOKEN) == 1  # the webhook URL printed once at start
    banner = next(line for line in log.splitlines() if TOKEN in line)
    assert banner.startswith("Z-API webhook URL")
    assert json.dumps(TOKEN) not in log


def test_proxy_headers_are_not_trusted_by_default(server):
    spoofed = requests.get(
        f"{server.base_url}/login", headers={"X-Forwarded-Proto": "https"}, timeout=30
    )
    assert "Strict-Transport-Security" not in spoofed.headers
    assert "Secure" not in spoofed.headers["Set-Cookie"]
