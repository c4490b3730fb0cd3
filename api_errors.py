"""The JSON API's errors: `{"error": "<HTTP reason>", "message": "..."}` for every refusal
under /api, werkzeug's own included, in the client's language (Accept-Language); and the
checks of a request body around its model's."""

from typing import Any, NoReturn, TypeVar

from flask import Response, abort, current_app, jsonify, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    default_exceptions,
)
from werkzeug.http import HTTP_STATUS_CODES

import api_schemas as schemas
from api_contract import REALM, bp
from database import db
from forms import Form, filled, first_error

Model = TypeVar("Model", bound=BaseModel)


# --- errors -------------------------------------------------------------------------


def error_response(
    status: int, message: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """A JSON error: `{"error": reason, "message": ...}` plus any `extra` fields."""
    reason = HTTP_STATUS_CODES.get(status, "Unknown Error")
    # `error` is the status line (a fixed key for programs); `message` is in the client's
    # language (Accept-Language).
    response = jsonify({"error": reason, "message": str(message or reason), **extra})
    response.status_code = status
    for name, value in dict(headers or {}).items():
        response.headers[name] = value
    return response


def api_abort(
    status: int, message: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> NoReturn:
    """Stop the request with a JSON error (see `error_response`)."""
    abort(error_response(status, message, headers, **extra))


def http_error_response(error: HTTPException) -> Response:
    """The JSON form of a werkzeug HTTP error, keeping headers such as `Allow`."""
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    if error.code == 401:
        headers.setdefault("WWW-Authenticate", f'Bearer realm="{REALM}"')
    return error_response(error.code or 500, _plain_message(error), headers)


def _plain_message(error: HTTPException) -> str:
    """Werkzeug's description, or a more useful one for the common API mistakes."""
    if isinstance(error, NotFound) and request.routing_exception is error:
        return _("There is no API endpoint at %(path)s.", path=request.path)
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        allowed = ", ".join(sorted(set(error.valid_methods) - {"HEAD", "OPTIONS"}))
        return _(
            "%(method)s is not allowed here; use %(allowed)s.",
            method=request.method,
            allowed=allowed,
        )
    if isinstance(error, RequestEntityTooLarge):
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return _("The request body is larger than the %(limit)s-byte limit.", limit=limit)
    return error.description or HTTP_STATUS_CODES.get(error.code or 500, "Error")


def _handle_http_error(error: HTTPException) -> Response:
    if error.code is None or error.code >= 500:
        db.session.rollback()  # whatever failed, don't leave a broken transaction behind
    if error.code is None or error.code == 500:
        # Flask has already logged the traceback; say nothing about the internals.
        return error_response(500, _("An unexpected error occurred."))
    return http_error_response(error)


# Register every status explicitly: the app's own (HTML) handlers for 404, 413 or 500
# are code-specific and would otherwise win over a catch-all HTTPException handler.
for _code in default_exceptions:
    bp.register_error_handler(_code, _handle_http_error)
bp.register_error_handler(HTTPException, _handle_http_error)


def is_api_request() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def json_routing_errors() -> Response | None:
    """404/405 for unknown /api URLs in JSON.

    A URL that matches no route belongs to no blueprint, so the blueprint's handlers
    never see it; this app-level hook runs before Flask raises the routing error.
    """
    error = request.routing_exception
    if isinstance(error, HTTPException) and (error.code or 0) >= 400 and is_api_request():
        return http_error_response(error)
    return None


# --- request bodies and validation ----------------------------------------------------


def json_object() -> dict:
    """The request's JSON body, which must be an object (else 415 or 400)."""
    if not request.is_json:
        api_abort(415, _("Send a JSON body with 'Content-Type: application/json'."))
    try:
        data = request.get_json()
    except BadRequest:
        api_abort(400, _("The body is not valid JSON."))
    except RecursionError:
        api_abort(400, _("The body is nested too deeply."))
    if not isinstance(data, dict):
        api_abort(400, _("The body must be a JSON object."))
    return data


# What a 400 says about the fields a model refused, per kind of problem, in this order.
FIELD_PROBLEMS = {
    "extra_forbidden": _l("Unknown fields: %(fields)s."),
    "missing": _l("Missing fields: %(fields)s."),
    "string_type": _l("These fields must be strings: %(fields)s."),
    schemas.NOT_TEXT: _l("These fields are not valid Unicode text: %(fields)s."),
}


def validation_error_response(error: ValidationError) -> Response:
    """The 400 for a request that a model of api_schemas.py refused."""
    problems = error.errors()
    for problem in problems:
        if problem["type"] == schemas.API_MESSAGE:
            return error_response(400, problem["msg"])
    for kind, message in FIELD_PROBLEMS.items():
        names = sorted({str(p["loc"][0]) for p in problems if p["type"] == kind and p["loc"]})
        if names:
            return error_response(400, str(message) % {"fields": ", ".join(names)})
    return error_response(400)


def validated(model: type[Model], data: Any) -> Model:
    """`data` read by `model`, for a body the view reads itself; else the same 400."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        abort(validation_error_response(error))


def validate_form(
    form_class: type[Form], fields: dict[str, str], *args: Any, renamed: dict | None = None
) -> Form:
    """Validate `fields` with a web form (minus CSRF) so API and web share their rules.

    `renamed` maps form field names to the API's in error reports ({"post": "body"}).
    """
    form = filled(form_class, fields, *args)
    if form.errors:
        renamed = renamed or {}
        errors = {renamed.get(name, name): messages for name, messages in form.errors.items()}
        api_abort(400, first_error(form), errors=errors)
    return form
