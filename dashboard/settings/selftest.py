"""The "send test callback" button: a sample callback through the public network path."""

import json
import secrets
import time

import requests

from ..translatable import N_

TIMEOUT = (5.0, 15.0)


class SelfTestFailed(Exception):
    """The sample callback did not come back as stored; message is an untranslated msgid."""

    def __init__(self, message: str, **params):
        super().__init__(message % params)
        self.message = message
        self.params = params


def sample_callback(instance_id: str | None) -> dict:
    """A DeliveryCallback shaped like Z-API's, marked as a test by its ids."""
    marker = f"TEST{secrets.token_hex(8).upper()}"
    return {
        "phone": "000000000000",
        "zaapId": marker,
        "messageId": marker,
        "instanceId": instance_id or "test",
        "momment": int(time.time() * 1000),
        "type": "DeliveryCallback",
    }


def send(url: str, instance_id: str | None) -> int:
    """Post a sample callback to ``url`` (our public webhook URL); return the stored id."""
    try:
        # No redirects: the webhook answers directly, and the URL carries the token.
        response = requests.post(
            url, json=sample_callback(instance_id), timeout=TIMEOUT, allow_redirects=False
        )
    except requests.Timeout:
        raise SelfTestFailed(N_("The public address did not answer in time.")) from None
    except requests.exceptions.SSLError:
        raise SelfTestFailed(
            N_("The public address has no valid https certificate for its host name.")
        ) from None
    except requests.ConnectionError:
        raise SelfTestFailed(
            N_("The public address cannot be reached from this server (DNS, firewall or proxy).")
        ) from None
    try:
        stored = response.json() if response.status_code == 200 else None
    except json.JSONDecodeError:
        stored = None
    if not isinstance(stored, dict) or not isinstance(stored.get("id"), int):
        raise SelfTestFailed(
            N_(
                "The public address answered HTTP %(status)d instead of storing the callback; "
                "check that the proxy forwards /webhooks/ to this dashboard."
            ),
            status=response.status_code,
        )
    return stored["id"]
