"""Error responses: JSON for machine routes, a page in the site's layout for people."""

from flask import Flask, Response, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

# Routes called by programs answer errors in JSON, whatever went wrong.
JSON_SECTIONS = {"webhooks", "api", "healthz", "ws", "metrics"}

# What each error means to a person, in their language.
EXPLANATIONS = {
    400: (
        _l("Bad request"),
        _l("The request could not be understood. Reload the page and try again."),
    ),
    403: (
        _l("Not allowed"),
        _l("Your account may not open this page. Ask an admin if you need it."),
    ),
    404: (_l("Not found"), _l("There is nothing at this address.")),
    405: (_l("Method not allowed"), _l("This address does not accept that kind of request.")),
    413: (_l("Too large"), _l("What was sent is larger than this address accepts.")),
    415: (_l("Unsupported type"), _l("This address does not accept that content type.")),
    429: (_l("Too many attempts"), _l("Wait a minute before trying again.")),
    500: (_l("Something went wrong"), _l("The error was logged. Try again in a moment.")),
    503: (_l("Unavailable"), _l("The service cannot answer right now. Try again in a moment.")),
}


def json_error(status: int, message: str) -> Response:
    """A JSON ``{"error": message}`` response with ``status``."""
    response = jsonify(error=str(message))
    response.status_code = status
    return response


def wants_json() -> bool:
    """Whether the current route answers in JSON (webhook, API, health check, metrics)."""
    return request.path.split("/")[1] in JSON_SECTIONS


def register(app: Flask) -> None:
    """Install the handlers that turn every HTTP error into a JSON or HTML answer."""
    # Unexpected exceptions reach this handler as InternalServerError, after Flask logs them.
    app.register_error_handler(HTTPException, _handle_http_error)


def _handle_http_error(error: HTTPException):
    code = error.code or 500
    title, message = EXPLANATIONS.get(code, (error.name, error.description))
    if isinstance(error, CSRFError):
        message = _(
            "The form expired or was sent from another site. Reload the page and try again."
        )
    headers = _allow_header(error)
    if code == 405:
        message = _(
            "Method %(method)s is not allowed here; use %(allowed)s.",
            method=request.method,
            allowed=headers.get("Allow", ""),
        )
    if wants_json():
        response = json_error(code, message)
        response.headers.update(headers)
        return response
    page = render_template("error.html", error=error, title=title, message=message)
    return page, code, headers


def _allow_header(error: HTTPException) -> dict[str, str]:
    methods = getattr(error, "valid_methods", None)
    return {"Allow": ", ".join(sorted(methods))} if methods else {}
