"""How an endpoint of the Mastodon client API is declared, once: `route(...)` names its
URL, the OAuth scope it needs, its summary and its response entity; the view's `path` and
`query` annotations (validated by flask-openapi3) and `params` annotation (the body, read
from a form, JSON or multipart, as Mastodon apps send any of them) name its request models.
`document()` is the OpenAPI 3.1 document of it all.

Errors are Mastodon's: `{"error": "..."}`. Paged lists carry a `Link` header with
`max_id` / `min_id` as Mastodon's do.
"""

import copy
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar, get_type_hints

import sqlalchemy as sa
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6750.errors import InsufficientScopeError
from flask import Response, abort, g, jsonify, request, url_for
from flask_openapi3 import APIBlueprint, Info, Tag
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest, HTTPException, default_exceptions

import openapi_documents
from database import db
from head_check import HEAD_CHECK, go_on
from models import User
from oauth import require_oauth
from oauth_store import SCOPES, OAuthToken
from web import allow_any_origin

bp = APIBlueprint("mastodon", __name__, url_prefix="/api")

DEFAULT_LIMIT = 20
MAX_LIMIT = 40
# Beyond any id a row can have: a bigger one in a URL is simply not found.
MAX_ID = 2**62
NOT_FOUND = "Record not found"
NEEDS_USER = "This method requires an authenticated user"


class Access(BaseModel):
    """Who may call an endpoint: `scope` needed of the token; `public` ones answer without
    one; `user` ones need a token of a user (not of an app alone)."""

    scope: str | None = None
    public: bool = False
    user: bool = True


ACCESS: dict[str, Access] = {}
DOCUMENTED: dict[str, type[BaseModel]] = {}


# --- errors -----------------------------------------------------------------------------


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def masto_abort(status: int, message: str, headers: dict[str, str] | None = None) -> NoReturn:
    abort(error_response(status, message, headers))


def not_found() -> NoReturn:
    masto_abort(404, NOT_FOUND)


def unprocessable(message: str) -> NoReturn:
    masto_abort(422, message)


def _handle_http_error(error: HTTPException) -> Response:
    if error.code is None or error.code >= 500:
        db.session.rollback()
        return error_response(500, "An unexpected error occurred")
    headers = {k: v for k, v in error.get_headers() if k.lower() not in ("content-type",)}
    message = NOT_FOUND if error.code == 404 else error.description or error.name
    return error_response(error.code, message, headers)


for _code in default_exceptions:
    bp.register_error_handler(_code, _handle_http_error)
bp.register_error_handler(HTTPException, _handle_http_error)


def validation_message(error: ValidationError) -> str:
    """One line naming the fields a model refused, as Mastodon's 422s do."""
    parts = []
    for problem in error.errors()[:5]:
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        parts.append(f"{where} {problem['msg']}")
    return "Validation failed: " + "; ".join(parts)


def validation_error_response(error: ValidationError) -> Response:
    return error_response(422, validation_message(error))


# --- request bodies ------------------------------------------------------------------


def body_fields() -> dict[str, Any]:
    """The body as one mapping, whatever the client sent: a JSON object, a form (with
    `name[]` lists), or multipart with files."""
    if request.is_json:
        if not request.get_data(cache=True).strip():
            return {}  # some apps send the JSON type with no body where none is needed
        try:
            data = request.get_json()
        except BadRequest:
            masto_abort(400, "The body is not valid JSON")
        except RecursionError:
            masto_abort(400, "The body is nested too deeply")
        if not isinstance(data, dict):
            masto_abort(400, "The body must be a JSON object")
        return data
    if request.mimetype == "multipart/form-data" and not (request.form or request.files):
        if request.content_length:  # werkzeug drops parts it cannot read, silently
            masto_abort(400, "The multipart body has no field that could be read")
    fields: dict[str, Any] = {}
    for name in request.form:
        values = request.form.getlist(name)
        if name.endswith("[]"):
            fields[name[:-2]] = values
        else:
            fields[name] = values[-1]
    for name in request.files:
        fields[name] = request.files[name]
    return fields


Model = TypeVar("Model", bound=BaseModel)


def read_params(model: type[Model]) -> Model:
    try:
        return model.model_validate(body_fields())
    except ValidationError as error:
        abort(validation_error_response(error))


# --- who is asking -------------------------------------------------------------------


def current_token() -> OAuthToken | None:
    return g.get("masto_token")


def current_user_or_none() -> User | None:
    token = current_token()
    return token.user if token else None


def me() -> User:
    """The token's user (the route declared that there must be one)."""
    user = current_user_or_none()
    if user is None:
        masto_abort(422, NEEDS_USER)
    return user


bp.after_request(allow_any_origin)


@bp.before_request
def check_access() -> Response | None:
    """The token and its scope, as `route` declared, before anything reads the body."""
    access = ACCESS.get(request.endpoint or "")
    if access is None or request.method == "OPTIONS":  # a CORS preflight carries no token
        return None
    has_token = request.authorization is not None
    if has_token or not access.public:
        scopes = [access.scope] if access.scope and not access.public else None
        try:
            g.masto_token = require_oauth.acquire_token(scopes)
        except InsufficientScopeError:
            return error_response(403, "This action is outside the authorized scopes")
        except OAuth2Error:
            return error_response(
                401, "The access token is invalid", {"WWW-Authenticate": 'Bearer realm="Mastodon"'}
            )
        if access.user and not access.public and g.masto_token.user is None:
            return error_response(422, NEEDS_USER)
    if request.environ.get(HEAD_CHECK):
        return go_on()
    return None


# --- paging ------------------------------------------------------------------------------


def is_id(value: str) -> bool:
    """Whether `value` is an id as Mastodon's are: 1 to 18 ASCII digits (Python's
    isdecimal() also takes other scripts' digits, such as "\u0663")."""
    return value.isascii() and value.isdecimal() and len(value) <= 18


def id_arg(name: str) -> int | None:
    value = request.args.get(name)
    if not value:
        return None
    if not is_id(value):
        masto_abort(400, f"{name} must be an id")
    return int(value)


def limit_arg(default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    value = request.args.get("limit")
    if not value:
        return default
    if not value.isdecimal() or not value.isascii():
        masto_abort(400, "limit must be a whole number")
    return max(1, min(int(value[:6]), maximum))


def id_page(
    select: sa.Select[Any], id_column: Any, default: int = DEFAULT_LIMIT
) -> tuple[list[Any], Callable[[Response], Response]]:
    """The page of `select` that `max_id`, `since_id`, `min_id` and `limit` ask for,
    newest first, and what adds its Link header to the response."""
    limit = limit_arg(default)
    max_id, since_id, min_id = id_arg("max_id"), id_arg("since_id"), id_arg("min_id")
    if max_id is not None:
        select = select.where(id_column < max_id)
    if since_id is not None:
        select = select.where(id_column > since_id)
    if min_id is not None:
        select = select.where(id_column > min_id).order_by(None).order_by(id_column.asc())
        rows = list(db.session.execute(select.limit(limit)).scalars())[::-1]
    else:
        rows = list(db.session.execute(select.order_by(id_column.desc()).limit(limit)).scalars())
    ids = [row.id for row in rows]
    return rows, functools.partial(add_link_header, ids=ids, limit=limit)


def add_link_header(response: Response, ids: Sequence[int], limit: int) -> Response:
    """`Link: <…?max_id=oldest>; rel="next", <…?min_id=newest>; rel="prev"`."""
    if not ids:
        return response
    args = {
        k: v for k, v in request.args.items() if k not in ("max_id", "min_id", "since_id", "limit")
    }
    view_args = request.view_args or {}
    endpoint = request.endpoint or ""

    def url(**paging: Any) -> str:
        return url_for(endpoint, **view_args, **args, limit=limit, **paging, _external=True)

    next_url, prev_url = url(max_id=min(ids)), url(min_id=max(ids))
    response.headers["Link"] = f'<{next_url}>; rel="next", <{prev_url}>; rel="prev"'
    return response


def paged(items: list[dict], link: Callable[[Response], Response]) -> Response:
    return link(jsonify(items))


# --- declaring endpoints ------------------------------------------------------------------


def ref(model: type[BaseModel]) -> dict:
    return openapi_documents.reference(DOCUMENTED, model)


def _response_doc(description: str, schema: Any, many: bool, paging: bool) -> dict:
    content = ref(schema) if isinstance(schema, type) else schema
    if many:
        content = {"type": "array", "items": content}
    doc: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": content}},
    }
    if paging:
        doc["headers"] = {
            "Link": {
                "description": "The next (older) and previous (newer) pages.",
                "schema": {"type": "string"},
            }
        }
    return doc


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _errors(*codes: int) -> dict[str, dict]:
    return {
        str(code): {
            "description": default_exceptions[code].description or "",
            "content": {"application/json": {"schema": ERROR_SCHEMA}},
        }
        for code in codes
    }


View = TypeVar("View", bound=Callable[..., Any])
# `<row_id:id>` in a rule is `{id}` in the document.
CONVERTER = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


def route(
    method: str,
    rule: str,
    summary: str,
    response: Any = None,
    *,
    tag: str,
    scope: str | None = None,
    public: bool = False,
    user: bool = True,
    many: bool = False,
    paging: bool = False,
    status: int = 200,
    files: bool = False,
    refusals: Sequence[int] = (),
) -> Callable[[View], View]:
    """Declare an endpoint: its URL, access (see `Access`), and answer (an entity, or a
    list of them with `many`; `paging` adds the Link header); `refusals` are the statuses
    it may refuse with beyond those every endpoint of its kind has."""

    def decorator(view: View) -> View:
        endpoint = f"{bp.name}.{view.__name__}"
        ACCESS[endpoint] = Access(scope=scope, public=public, user=user)
        hints = get_type_hints(view)
        params_model = hints.pop("params", None)
        hints.pop("return", None)

        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Any:
            if params_model is not None:
                kwargs["params"] = read_params(params_model)
            return view(**kwargs)

        wrapper.__annotations__ = dict(hints)
        responses: dict[str, Any] = {}
        if response is not None:
            responses[str(status)] = _response_doc("OK", response, many, paging)
        else:
            responses[str(status)] = {"description": "OK"}
        # Any endpoint may meet a bad token (401), a bad id or argument, and the 422 of a
        # token without a user; the private ones also a token without the scope (403).
        codes = [400, 401, 404, 422] + ([] if public else [403]) + ([413] if files else [])
        responses.update(_errors(*codes, *refusals))
        extensions: dict[str, Any] = {}
        if params_model is not None:
            extensions["requestBody"] = _request_body(params_model, files)
        if public:
            extensions["security"] = []
        path = CONVERTER.sub(r"{\1}", f"{bp.url_prefix}{rule}")
        declare = getattr(bp, method)(
            rule,
            summary=summary,
            description=" ".join((view.__doc__ or "").split()) or None,
            responses=responses,
            tags=[Tag(name=tag)],
            security=None if public else [{"oauth2": [scope] if scope else []}],
            operation_id=f"{method}_{path}".replace("/", "_").replace("{", "").replace("}", ""),
            openapi_extensions=extensions,
            strict_slashes=False,
        )
        declare(wrapper)
        return view

    return decorator


def _request_body(model: type[BaseModel], files: bool) -> dict:
    schema = ref(model)
    content = {
        "application/json": {"schema": schema},
        "application/x-www-form-urlencoded": {"schema": schema},
    }
    if files:
        content = {"multipart/form-data": {"schema": schema}, **content}
    return {"required": False, "content": content}


@functools.cache
def _document() -> dict:
    info = Info(
        title="Microblog: Mastodon client API",
        version="1.0",
        description=(
            "The Mastodon client API as this site speaks it (ids are strings, errors "
            '`{"error": "..."}`, lists paged by `max_id`/`since_id`/`min_id`/`limit` with '
            "a `Link` header), plus the site's own export and import tasks under "
            "`/api/v1/microblog`. Register an app at `POST /api/v1/apps`, then get a "
            "token at `/oauth/token`."
        ),
    )
    schemes = {"oauth2": _oauth_scheme()}
    return openapi_documents.build(bp, info, DOCUMENTED, schemes, [{"oauth2": []}])


def _oauth_scheme() -> dict:
    scopes = dict.fromkeys(SCOPES, "")
    return {
        "type": "oauth2",
        "flows": {
            "authorizationCode": {
                "authorizationUrl": "/oauth/authorize",
                "tokenUrl": "/oauth/token",
                "scopes": scopes,
            },
            "password": {"tokenUrl": "/oauth/token", "scopes": scopes},
            "clientCredentials": {"tokenUrl": "/oauth/token", "scopes": scopes},
        },
    }


def document() -> dict:
    return copy.deepcopy(_document())
