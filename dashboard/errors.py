"""Error responses: JSON for machine routes, an HTML page for people."""

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

# Routes called by programs answer errors in JSON, whatever went wrong.
JSON_SECTIONS = {"webhooks", "api", "healthz"}


def json_error(status: int, message: str) -> Response:
    """A JSON ``{"error": message}`` response with ``status``."""
    response = jsonify(error=message)
    response.status_code = status
    return response


def register(app: Flask) -> None:
    """Install the handlers that turn every HTTP error into a JSON or HTML answer."""
    # Unexpected exceptions reach this handler as InternalServerError, after Flask logs them.
    app.register_error_handler(HTTPException, _handle_http_error)


def _handle_http_error(error: HTTPException):
    if request.path.split("/")[1] not in JSON_SECTIONS:
        page = render_template("error.html", error=error)
        return page, error.code, _allow_header(error)
    response = json_error(error.code or 500, _sentence(error))
    response.headers.update(_allow_header(error))
    return response


def _allow_header(error: HTTPException) -> dict[str, str]:
    methods = getattr(error, "valid_methods", None)
    return {"Allow": ", ".join(sorted(methods))} if methods else {}


def _sentence(error: HTTPException) -> str:
    if error.code == 405:
        allowed = ", ".join(sorted(getattr(error, "valid_methods", None) or []))
        return f"Method {request.method} is not allowed here; use {allowed}."
    if error.code == 404:
        return "Not found."
    return error.description or error.name
