"""How an endpoint of the JSON API is declared, once: `route(...)` names its URL, auth,
summary and responses, and the view's `path`, `query` and `body` annotations name its request
models (api_schemas.py). flask-openapi3's APIBlueprint validates each request with those
models before the view runs, and `document()` is the OpenAPI 3.1 document of it all.

APIBlueprint is a plain Flask blueprint: the app stays a `Flask`, and the rest of the site
is not touched by it.
"""

import copy
import functools
from collections.abc import Callable
from typing import Any, TypeVar, get_type_hints

from flask_openapi3 import APIBlueprint, Info, Tag
from pydantic import BaseModel

import api_schemas as schemas
import openapi_documents

bp = APIBlueprint("api", __name__, url_prefix="/api")

REALM = "microblog"
# Filled by `route`: each endpoint's auth scheme (None: open to all), and those taking JSON.
ENDPOINT_AUTH: dict[str, str | None] = {}
JSON_BODIES: set[str] = set()


# The models the document describes: those named by the routes and their responses.
DOCUMENTED: dict[str, type[BaseModel]] = {}


def ref(model: type[BaseModel]) -> dict:
    return openapi_documents.reference(DOCUMENTED, model)


def _header(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


def json_response(
    description: str, schema: type[BaseModel] | dict, headers: dict | None = None
) -> dict:
    content = ref(schema) if isinstance(schema, type) else schema
    response = {"description": description, "content": {"application/json": {"schema": content}}}
    if headers:
        response["headers"] = headers
    return response


def created_response(description: str, model: type[BaseModel]) -> dict:
    return json_response(description, model, {"Location": _header("The new resource's URL.")})


ERROR_RESPONSES = {
    400: ("The JSON, a field or a query parameter is invalid.", None),
    401: (
        "Missing or bad credentials.",
        {"WWW-Authenticate": _header("`Bearer` or `Basic`, with a realm.")},
    ),
    403: ("Not allowed for this user.", None),
    404: ("No such resource.", None),
    405: ("Method not allowed.", {"Allow": _header("The allowed methods.")}),
    409: ("Conflicts with the current state.", None),
    413: ("The request body is too large.", None),
    415: ("The body is not `application/json`.", None),
    429: (
        "Too many requests.",
        {"Retry-After": _header("Seconds to wait.", {"type": "string", "pattern": "^[0-9]+$"})},
    ),
    503: ("A service the request needs (the mail server) is unavailable; try again.", None),
}


def errors(*codes: int) -> dict:
    return {
        code: json_response(ERROR_RESPONSES[code][0], schemas.Error, ERROR_RESPONSES[code][1])
        for code in codes
    }


TASK_CONFLICT = json_response(
    "Another task of that name is active, or the task is over.", schemas.TaskConflict
)
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "token": [{"token": []}],
    "basic": [{"basic": []}],
}


# A view function; `route` registers it and gives it back unchanged.
View = TypeVar("View", bound=Callable[..., Any])


def route(
    method: str,
    rule: str,
    summary: str,
    responses: dict,
    *,
    tag: str,
    auth: str | None = "token",
    request_body: dict | None = None,
) -> Callable[[View], View]:
    """Declare an endpoint: `bp.<method>(rule)` with its auth, summary and responses; the
    view's `path`, `query` and `body` annotations name its request models. Authenticated
    ones also document 401, those that take a body 400, 413 and 415."""

    def decorator(view: View) -> View:
        endpoint = f"{bp.name}.{view.__name__}"
        ENDPOINT_AUTH[endpoint] = auth
        hints = get_type_hints(view)
        if "body" in hints:
            ref(hints["body"])
        all_responses = {**responses, **(errors(401) if auth else {})}
        if "body" in hints:
            JSON_BODIES.add(endpoint)
        if "body" in hints or request_body:
            all_responses.update(errors(400, 413, 415))
        if "query" in hints:
            all_responses.update(errors(400))
        extensions: dict[str, Any] = {} if auth else {"security": []}
        if request_body:
            extensions["requestBody"] = request_body
        path = f"{bp.url_prefix}{rule}".replace("<int:", "{").replace("<", "{").replace(">", "}")
        declare = getattr(bp, method)(
            rule,
            summary=summary,
            # The docstring says more, as one paragraph (not the library's lines joined by <br/>).
            description=" ".join((view.__doc__ or "").split()) or None,
            responses={str(code): all_responses[code] for code in sorted(all_responses)},
            tags=[Tag(name=tag)],
            security=SECURITY[auth] if auth else None,
            operation_id=f"{method}_{path}".replace("/", "_").replace("{", "").replace("}", ""),
            openapi_extensions=extensions,
        )
        return declare(view)

    return decorator


@functools.cache
def _document() -> dict:
    info = Info(
        title="Microblog API",
        version="1.0",
        description=(
            "Get a token with HTTP Basic auth at `POST /api/tokens`, then send "
            "`Authorization: Bearer <token>`. Tokens last one hour. Errors are "
            '`{"error": "<HTTP reason>", "message": "..."}`.'
        ),
    )
    schemes = {
        "token": {"type": "http", "scheme": "bearer"},
        "basic": {"type": "http", "scheme": "basic"},
    }
    return openapi_documents.build(
        bp, info, DOCUMENTED, schemes, SECURITY["token"], is_response=_is_response
    )


def _is_response(model: type[BaseModel]) -> bool:
    return issubclass(model, schemas.Out | schemas.Error)


def document() -> dict:
    """The OpenAPI 3.1 document of everything under /api, as a fresh dict."""
    return copy.deepcopy(_document())
