"""The one Z-API client of the product: set webhook URLs and read the instance's state.

The instance token sits in every request path and the Client-Token grants access to every
instance of the account, so neither may reach a log line, an exception message or a
traceback. Nothing here imports Flask.
"""

import json
import logging
import math
import re
import socket
import time
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from . import logs
from .translatable import N_

log = logging.getLogger(__name__)

# Which path each webhook kind is set through (zapi-reference.md, section 2).
WEBHOOK_ENDPOINTS = {
    "delivery": "update-webhook-delivery",
    "message-status": "update-webhook-message-status",
    "received": "update-webhook-received",
    "connected": "update-webhook-connected",
    "disconnected": "update-webhook-disconnected",
    "chat-presence": "update-webhook-chat-presence",
}
# Which field of GET /me holds each kind's URL (zapi-reference.md, section 2).
ME_URL_FIELDS = {
    "delivery": "deliveryCallbackUrl",
    "message-status": "messageStatusCallbackUrl",
    "received": "receivedCallbackUrl",
    "connected": "connectedCallbackUrl",
    "disconnected": "disconnectedCallbackUrl",
    "chat-presence": "presenceChatCallbackUrl",
}
# Z-API's own error text goes into messages shown to admins; cap it so a huge HTML error
# page cannot flood the page or the log of whoever displays it.
MAX_DETAIL_LENGTH = 300

# What Z-API answers when the account has an active Client-Token and we sent none.
_TOKEN_MISSING = re.compile(r"client-token is not configured|null not allowed", re.IGNORECASE)
# What Z-API answers to a wrong Client-Token: 'Client-Token <value> not allowed'.
_TOKEN_WRONG = re.compile(r"client-token\b.*\bnot allowed", re.IGNORECASE | re.DOTALL)
# The IP allow-list of the account refused us: '[IP request] not allowed'.
_IP_REFUSED = re.compile(r"\bIP\b.*\bnot allowed", re.IGNORECASE | re.DOTALL)
_INSTANCE_UNKNOWN = re.compile(
    r"(instance|token).*not (be )?found|not (be )?found.*(instance|token)",
    re.IGNORECASE | re.DOTALL,
)


class ZapiError(Exception):
    """A Z-API call that did not succeed; the message says what an admin can do about it.

    ``message`` is an untranslated msgid with ``%(name)s`` placeholders filled from
    ``params``, so the web layer can show it in the admin's language; ``reason`` is a
    stable machine-readable code such as ``"client-token-wrong"`` or ``"timeout"``.
    """

    def __init__(self, message: str, reason: str = "unexpected", **params):
        super().__init__(message % params)
        self.message = message
        self.params = params
        self.reason = reason


def protect_urllib3() -> None:
    """Attach the redacting filter to urllib3's loggers, which log full URLs at DEBUG."""
    # A logger's filters run only for records created on that very logger, so each
    # urllib3 module logger needs its own; these are the ones that log request URLs.
    names = {"urllib3", "urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry"}
    names.update(
        name
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("urllib3.") and isinstance(logger, logging.Logger)
    )
    for name in names:
        logs.protect(logging.getLogger(name))


protect_urllib3()


class _Failure:
    """Why one try failed before Z-API answered; turned into a ZapiError after the last try."""

    def __init__(self, reason: str, retry: bool, seconds: float = 0.0):
        self.reason = reason
        self.retry = retry
        self.seconds = seconds


class ZapiClient:
    """Talks to one Z-API instance over one HTTP session; every failure is a ZapiError."""

    def __init__(
        self,
        base_url: str,
        instance_id: str,
        instance_token: str,
        client_token: str | None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        attempts: int = 3,
        backoff: float = 0.5,
    ):
        self._base = base_url.rstrip("/")
        # quote() so that a pasted token with "/" or "?" cannot change which path we call.
        self._instance_url = (
            f"{self._base}/instances/{quote(instance_id, safe='')}"
            f"/token/{quote(instance_token, safe='')}"
        )
        self._secrets = (instance_token, client_token)
        logs.keep_secret(*self._secrets)  # whatever else logs them in this process
        self._client_token = client_token or None
        self._timeout = (connect_timeout, read_timeout)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        parts = urlsplit(self._base)
        # Only host and port: userinfo in the base URL would be a credential.
        host = parts.hostname or self._base
        self._host = f"{host}:{parts.port}" if parts.port else host
        self._session = requests.Session()

    def close(self) -> None:
        """Close the HTTP session and its pooled connections."""
        self._session.close()

    def __enter__(self) -> "ZapiClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def set_webhook(self, kind: str, url: str) -> None:
        """Set the URL Z-API posts ``kind`` callbacks to (a key of WEBHOOK_ENDPOINTS)."""
        try:
            endpoint = WEBHOOK_ENDPOINTS[kind]
        except KeyError:
            raise ValueError(f"unknown webhook kind {kind!r}") from None
        _confirmed(self._call("PUT", endpoint, {"value": url}))

    def notify_sent_by_me(self) -> None:
        """Have Z-API post the messages sent from the phone to the received webhook too."""
        # Z-API accepts this only while a received URL is set (zapi-reference.md, section 2).
        _confirmed(self._call("PUT", "update-notify-sent-by-me", {"notifySentByMe": True}))

    def me(self) -> dict:
        """The instance's webhook URLs, notify-sent-by-me and connection state; nothing else."""
        # /me also echoes the instance token and proxy credentials: keep only what we show.
        body = self._call("GET", "me")
        found: dict[str, Any] = {
            field: _url_or_none(body.get(field)) for field in ME_URL_FIELDS.values()
        }
        found["receiveCallbackSentByMe"] = _bool_or_none(body.get("receiveCallbackSentByMe"))
        found["connected"] = _bool_or_none(body.get("connected"))
        return found

    def status(self) -> dict:
        """Whether the instance and its phone are connected, with Z-API's remark."""
        body = self._call("GET", "status")
        error = body.get("error")
        return {
            "connected": _bool_or_none(body.get("connected")),
            "smartphoneConnected": _bool_or_none(body.get("smartphoneConnected")),
            "error": self._detail(error) if isinstance(error, str) else None,
        }

    def _call(self, method: str, endpoint: str, payload: dict | None = None) -> dict:
        """Send one request with retries; return the JSON object of a 200 answer."""
        headers = {"Accept": "application/json"}
        if self._client_token:
            headers["Client-Token"] = self._client_token
        data = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(payload).encode("utf-8")

        for attempt in range(1, self._attempts + 1):
            outcome = self._try(method, endpoint, headers, data)
            retry = (
                outcome.retry
                if isinstance(outcome, _Failure)
                else outcome.status_code >= 500  # Z-API's own trouble may pass; 4xx will not
            )
            if not retry or attempt == self._attempts:
                break
            time.sleep(self._backoff * 2 ** (attempt - 1))

        # Raised here, outside any except block, so that no requests exception (whose text
        # holds the URL with the instance token) is chained as __context__.
        if isinstance(outcome, _Failure):
            raise self._failure_error(outcome)
        return self._answer(outcome)

    def _try(
        self, method: str, endpoint: str, headers: dict, data: bytes | None
    ) -> "requests.Response | _Failure":
        """One HTTP exchange; a requests exception becomes a _Failure without its text."""
        try:
            response = self._session.request(
                method,
                f"{self._instance_url}/{endpoint}",
                headers=headers,
                data=data,
                timeout=self._timeout,
                # A redirect would carry the Client-Token and the token URL elsewhere.
                allow_redirects=False,
            )
        except requests.ConnectTimeout:
            failure = _Failure("timeout", retry=True, seconds=self._timeout[0])
        except requests.Timeout:
            failure = _Failure("timeout", retry=True, seconds=self._timeout[1])
        except requests.exceptions.SSLError:
            # A certificate problem does not go away by asking again.
            failure = _Failure("tls", retry=False)
        except requests.ConnectionError as exc:
            if _caused_by(exc, _is_read_timeout):
                # requests reports a timeout while reading the body as a connection error.
                failure = _Failure("timeout", retry=True, seconds=self._timeout[1])
            elif _caused_by(exc, _is_dns_failure):
                failure = _Failure("dns", retry=True)
            else:
                failure = _Failure("unreachable", retry=True)
        except requests.RequestException:
            failure = _Failure("unexpected", retry=False)
        else:
            log.info("Z-API %s %s -> %s", method, endpoint, response.status_code)
            return response
        log.info("Z-API %s %s -> %s", method, endpoint, failure.reason)
        return failure

    def _failure_error(self, failure: _Failure) -> ZapiError:
        """The ZapiError for a call whose last try got no HTTP answer."""
        if failure.reason == "timeout":
            return ZapiError(
                N_(
                    "Z-API did not answer within %(seconds)d seconds (%(attempts)d tries). "
                    "Check that this server can reach Z-API, or try again later."
                ),
                reason="timeout",
                seconds=math.ceil(failure.seconds),
                attempts=self._attempts,
            )
        if failure.reason == "dns":
            return ZapiError(
                N_(
                    "The address %(host)s could not be resolved. Check the Z-API address "
                    "and this server's DNS settings."
                ),
                reason="dns",
                host=self._host,
            )
        if failure.reason == "unreachable":
            return ZapiError(
                N_(
                    "Could not connect to %(host)s. Check the Z-API address and that this "
                    "server can reach the internet (firewall, proxy)."
                ),
                reason="unreachable",
                host=self._host,
            )
        if failure.reason == "tls":
            return ZapiError(
                N_(
                    "Could not establish a secure connection to %(host)s. Check this "
                    "server's clock and its trusted certificates."
                ),
                reason="tls",
                host=self._host,
            )
        return ZapiError(
            N_("The request to %(host)s failed before Z-API answered. Try again later."),
            reason="unexpected",
            host=self._host,
        )

    def _answer(self, response: requests.Response) -> dict:
        """The JSON object of a 200 answer; any other answer raises its ZapiError."""
        status = response.status_code
        if 300 <= status < 400:
            # Not even the Location is shown: it could echo the token URL.
            raise ZapiError(
                N_("Z-API answered with a redirect to another address; it was not followed."),
                reason="redirect",
            )
        body = _json(response)
        if status >= 400:
            raise self._http_error(status, body, response)
        if status != 200 or not isinstance(body, dict):
            raise ZapiError(
                N_(
                    "Z-API gave an answer the dashboard does not understand (HTTP %(status)d). "
                    "Try again later."
                ),
                reason="unexpected",
                status=status,
            )
        return body

    def _http_error(self, status: int, body: Any, response: requests.Response) -> ZapiError:
        """Map a 4xx or 5xx answer to the ZapiError an admin can act on."""
        if status >= 500:
            return ZapiError(
                N_(
                    "Z-API had a server error (HTTP %(status)d) on each of %(attempts)d tries. "
                    "Try again later."
                ),
                reason="server-error",
                status=status,
                attempts=self._attempts,
            )
        text = (body.get("error") or body.get("message")) if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            text = response.text if body is None else json.dumps(body, ensure_ascii=False)
        detail = self._detail(text) or self._detail(response.reason or "") or "-"
        if _TOKEN_MISSING.search(detail):
            return ZapiError(
                N_(
                    "This Z-API account requires a Client-Token (Z-API said: %(detail)s). "
                    "Copy the account security token from the Z-API panel, Security tab, "
                    "and paste it in the Client-Token field."
                ),
                reason="client-token-missing",
                detail=detail,
            )
        if _IP_REFUSED.search(detail):
            return ZapiError(
                N_(
                    "Z-API refused requests from this server's IP address (Z-API said: "
                    "%(detail)s). Allow this server's IP address in the Z-API panel, "
                    "Security tab."
                ),
                reason="ip-not-allowed",
                detail=detail,
            )
        if status == 403 or _TOKEN_WRONG.search(detail):
            return ZapiError(
                N_(
                    "Z-API did not accept the Client-Token (HTTP %(status)d, Z-API said: "
                    "%(detail)s). Copy the account security token again from the Z-API panel, "
                    "Security tab, and paste it in the Client-Token field."
                ),
                reason="client-token-wrong",
                status=status,
                detail=detail,
            )
        if status == 404 or (status in (400, 401) and _INSTANCE_UNKNOWN.search(detail)):
            return ZapiError(
                N_(
                    "Z-API does not know this instance (HTTP %(status)d, Z-API said: "
                    "%(detail)s). Check the instance ID and the instance token in the Z-API "
                    "panel."
                ),
                reason="instance-not-found",
                status=status,
                detail=detail,
            )
        if status == 405:
            return ZapiError(
                N_(
                    "Z-API refused the HTTP method of the request (HTTP 405, Z-API said: "
                    "%(detail)s). The Z-API address may be wrong; otherwise please report "
                    "this as a bug."
                ),
                reason="method-not-allowed",
                detail=detail,
            )
        if status == 415:
            return ZapiError(
                N_(
                    "Z-API refused the content type of the request (HTTP 415, Z-API said: "
                    "%(detail)s). Please report this as a bug."
                ),
                reason="unsupported-media-type",
                detail=detail,
            )
        return ZapiError(
            N_("Z-API rejected the request (HTTP %(status)d). Z-API said: %(detail)s"),
            reason="bad-request",
            status=status,
            detail=detail,
        )

    def _detail(self, text: str) -> str:
        """Z-API's text on one line, without our secrets, short enough to show."""
        # Z-API echoes a wrong Client-Token, and may echo the webhook URL we sent, in any
        # encoding: scrubbed before it is cut, so no cut can leave a recognisable piece.
        return logs.scrub(" ".join(text.split()), *self._secrets)[:MAX_DETAIL_LENGTH]


def _confirmed(body: dict) -> None:
    """Raise unless Z-API's answer to a change is an explicit ``{"value": true}``."""
    # Z-API has been seen answering 200 {"value": false} to a failed change, so only an
    # explicit true counts as success.
    if body.get("value") is not True:
        raise ZapiError(
            N_(
                "Z-API answered but did not confirm the change. Check the instance in "
                "the Z-API panel and try again."
            ),
            reason="value-false",
        )


def _json(response: requests.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON."""
    try:
        return json.loads(response.content)
    except (ValueError, RecursionError):
        return None


def _caused_by(exc: BaseException, test) -> bool:
    """Whether ``test`` holds for ``exc`` or any error in its chain of causes."""
    seen: set[int] = set()
    pending: list[Any] = [exc]
    while pending:
        error = pending.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        if test(error):
            return True
        # requests wraps urllib3's MaxRetryError in args; its cause is in .reason.
        pending.extend([error.__cause__, error.__context__, getattr(error, "reason", None)])
        pending.extend(error.args)
    return False


def _is_dns_failure(error: BaseException) -> bool:
    """Whether ``error`` is a host name that did not resolve."""
    if isinstance(error, socket.gaierror) or type(error).__name__ == "NameResolutionError":
        return True
    # Only tested, never shown: the text of requests' errors holds the token URL.
    text = str(error)
    return "Name or service not known" in text or "Failed to resolve" in text


def _is_read_timeout(error: BaseException) -> bool:
    """Whether ``error`` is urllib3's timeout while waiting for an answer."""
    return isinstance(error, TimeoutError) or (type(error).__name__ == "ReadTimeoutError")


def _url_or_none(value: Any) -> str | None:
    # Z-API reports an unset URL as "" (see initialDataCallbackUrl in the /me example).
    return value if isinstance(value, str) and value.strip() else None


def _bool_or_none(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
