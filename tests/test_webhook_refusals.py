"""Bodies no strict reader could read back are refused at the webhook, in plain words."""

import pytest
from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import Delivery, RejectedRequest

# What was seen stored with a 200, and the words the refusal must carry.
REFUSED = {
    "lone surrogate in a value": (
        rb'{"type":"DeliveryCallback","messageId":"x\ud800"}',
        r"The text at $.messageId holds a lone surrogate (\ud800)",
    ),
    "lone surrogate in a key": (
        rb'{"type":"DeliveryCallback","\udc00":1}',
        r'The field name "\udc00" in $ holds a lone surrogate (\udc00)',
    ),
    "980 levels deep": (
        b'{"type":"DeliveryCallback","a":' + b"[" * 980 + b"]" * 980 + b"}",
        "more than 32 levels deep",
    ),
    "NaN": (b'{"type":"DeliveryCallback","momment":NaN}', "holds NaN, which is not a JSON"),
    "Infinity": (b'{"type":"X","a":[Infinity]}', "holds Infinity, which is not a JSON"),
    "-Infinity": (b'{"type":"X","a":-Infinity}', "holds -Infinity, which is not a JSON"),
}


def counts():
    with db.reading() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Delivery, RejectedRequest)
        )


@pytest.mark.parametrize(("body", "words"), REFUSED.values(), ids=REFUSED.keys())
def test_an_unreadable_body_is_refused_and_logged(client, webhook_path, body, words):
    response = client.post(webhook_path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert words in response.json["error"]
    assert counts() == (0, 1)


def test_the_refusal_is_in_portuguese_for_a_portuguese_sender(client, webhook_path):
    body, _words = REFUSED["lone surrogate in a value"]
    response = client.post(
        webhook_path,
        data=body,
        content_type="application/json",
        headers={"Accept-Language": "pt-BR"},
    )
    assert response.status_code == 400
    assert "substituto isolado" in response.json["error"]


def test_a_body_at_the_depth_limit_with_paired_surrogates_is_stored(client, webhook_path):
    body = b'{"type":"X","e":"\\ud83d\\ude00","a":' + b"[" * 31 + b"]" * 31 + b"}"
    response = client.post(webhook_path, data=body, content_type="application/json")
    assert response.status_code == 200
    assert counts() == (1, 0)
