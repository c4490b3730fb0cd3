"""The OpenAPI 3.1 document of the JSON API, served at /api/openapi.json.

Each endpoint is one `operation(...)` call at the bottom of this file; a new endpoint
adds its call (and, for a new kind of object, a schema in SCHEMAS). Field limits are
read from the web forms, so the document and the validation cannot drift apart.
"""

import copy
from typing import Any

from wtforms.fields.core import UnboundField
from wtforms.validators import DataRequired, Email, Length, Regexp

from forms import AccountForm, DeleteAccountForm, NewUserForm, PostForm
from models import MAX_ROW_ID, POST_MAX, TaskStatus

# Paging limits, shared with api.py (which imports this module).
DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000  # keeps OFFSET inside what every database accepts
MAX_ID = MAX_ROW_ID  # larger ids cannot exist


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def form_string(field: UnboundField) -> dict:
    """A string schema with the limits a WTForms field declaration checks.

    Uniqueness and the finer points of email syntax are beyond JSON Schema; the
    server answers 400 for those.
    """
    schema: dict[str, Any] = {"type": "string"}
    for validator in field.kwargs.get("validators", []):
        if isinstance(validator, Length):
            if validator.min > 0:
                schema["minLength"] = validator.min
            if validator.max >= 0:
                schema["maxLength"] = validator.max
        elif isinstance(validator, Regexp):
            # JSON Schema patterns are ECMA-262, where `$` is what Python spells `\Z`.
            schema["pattern"] = validator.regex.pattern.replace(r"\Z", "$")
        elif isinstance(validator, DataRequired):
            schema["minLength"] = max(1, schema.get("minLength", 1))
            schema.setdefault("pattern", r"\S")  # DataRequired refuses blank strings
        elif isinstance(validator, Email):
            schema["format"] = "email"
    return schema


LINK = {"type": "string", "description": "A URL path on this server."}
TIMESTAMP = {"type": "string", "format": "date-time", "examples": ["2024-05-01T12:00:00Z"]}


def links(*names: str, nullable_names: tuple[str, ...] = ()) -> dict:
    properties = {name: LINK for name in names}
    properties.update({name: nullable(LINK) for name in nullable_names})
    return {
        "type": "object",
        "required": [*names, *nullable_names],
        "properties": properties,
    }


def collection_of(item_schema: str) -> dict:
    """A page of a collection: items, _meta and _links (tutorial format)."""
    return {
        "type": "object",
        "required": ["items", "_meta", "_links"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": ref(item_schema)},
            "_meta": ref("PageMeta"),
            "_links": links("self", nullable_names=("next", "prev")),
        },
    }


# Sent back by clients that PUT a whole fetched user; the server ignores them.
READ_ONLY_USER_FIELDS = {
    name: {"readOnly": True, "description": "Ignored when sent."}
    for name in ("id", "last_seen", "post_count", "follower_count", "following_count", "_links")
}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "The HTTP reason phrase."},
            "message": {"type": "string"},
            "errors": {
                "type": "object",
                "description": "Per-field validation messages (400 only).",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
    "PageMeta": {
        "type": "object",
        "required": ["page", "per_page", "total_pages", "total_items"],
        "additionalProperties": False,
        "properties": {
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
            "total_pages": {"type": "integer", "minimum": 0},
            "total_items": {"type": "integer", "minimum": 0},
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "expires_at"],
        "additionalProperties": False,
        "properties": {"token": {"type": "string"}, "expires_at": TIMESTAMP},
    },
    "User": {
        "type": "object",
        "required": [
            "id",
            "username",
            "about_me",
            "last_seen",
            "post_count",
            "follower_count",
            "following_count",
            "_links",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "email": {"type": "string", "description": "Only in the owner's own view."},
            "about_me": nullable({"type": "string"}),
            "last_seen": nullable(TIMESTAMP),
            "post_count": {"type": "integer", "minimum": 0},
            "follower_count": {"type": "integer", "minimum": 0},
            "following_count": {"type": "integer", "minimum": 0},
            "_links": links("self", "followers", "following", "posts", "avatar"),
        },
    },
    "NewUser": {
        "type": "object",
        "required": ["username", "email", "password"],
        "additionalProperties": False,
        "properties": {
            "username": form_string(NewUserForm.username),
            "email": form_string(NewUserForm.email),
            "password": form_string(NewUserForm.password),
            "about_me": nullable(form_string(NewUserForm.about_me)),
            **READ_ONLY_USER_FIELDS,
        },
    },
    "UserUpdate": {
        "type": "object",
        "additionalProperties": False,
        "description": "A user as `GET` returned it may be sent back whole: its read-only "
        "fields are ignored.",
        "properties": {
            "username": form_string(AccountForm.username),
            "email": {
                **form_string(AccountForm.email),
                "description": "A new address needs `current_password`; it takes effect when "
                "the link mailed to it is opened (the current address is told). Until then "
                "the user shows the current address. The current address sent back is no "
                "change.",
            },
            "about_me": nullable(form_string(AccountForm.about_me)),
            "current_password": {
                "type": "string",
                "writeOnly": True,
                "description": "Your password: needed to change the email address.",
            },
            **READ_ONLY_USER_FIELDS,
        },
    },
    "AccountDeletion": {
        "type": "object",
        "required": ["current_password"],
        "additionalProperties": False,
        "properties": {
            "current_password": {
                **form_string(DeleteAccountForm.current_password),
                "writeOnly": True,
                "description": "Your password.",
            },
        },
    },
    "NewAvatar": {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "A PNG, JPEG or WebP picture, up to MICROBLOG_AVATAR_MAX_BYTES.",
            },
        },
    },
    "Post": {
        "type": "object",
        "required": ["id", "body", "timestamp", "language", "author", "_links"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "body": {"type": "string"},
            "timestamp": TIMESTAMP,
            "language": nullable(
                {
                    "type": "string",
                    "description": "The language the post is written in, as detected when "
                    "it was posted (`en`, `es`, …); null when it could not be told (too "
                    "short, only links) or has not been looked at yet (an imported post, "
                    "for a few moments).",
                }
            ),
            "author": {
                "type": "object",
                "required": ["id", "username"],
                "properties": {"id": {"type": "integer"}, "username": {"type": "string"}},
            },
            "_links": links("self", "author"),
        },
    },
    "NewPost": {
        "type": "object",
        "required": ["body"],
        "additionalProperties": False,
        "properties": {"body": form_string(PostForm.post)},
    },
    "Task": {
        "type": "object",
        "required": [
            "id",
            "name",
            "description",
            "status",
            "progress",
            "message",
            "created_at",
            "started_at",
            "finished_at",
            "result_size",
            "_links",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "status": {"enum": [status.value for status in TaskStatus]},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "message": nullable({"type": "string"}),
            "created_at": TIMESTAMP,
            "started_at": nullable(TIMESTAMP),
            "finished_at": nullable(TIMESTAMP),
            "result_size": nullable({"type": "integer", "minimum": 0}),
            "_links": {
                "type": "object",
                "required": ["self", "cancel"],
                "additionalProperties": False,
                "properties": {
                    "self": LINK,
                    "cancel": LINK,
                    "download": {**LINK, "description": "Present once the export is ready."},
                },
            },
        },
    },
    "NewTask": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string", "examples": ["export_posts"]}},
    },
    "NewUploadTask": {
        "type": "object",
        "required": ["name", "file"],
        "properties": {
            "name": {"type": "string", "enum": ["import_posts"]},
            "file": {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "Our export (posts.json), a Mastodon archive (.zip) or its "
                "outbox.json. Up to MICROBLOG_IMPORT_MAX_BYTES.",
            },
        },
    },
    "TaskConflict": {
        "allOf": [ref("Error")],
        "properties": {"task": ref("Task")},
    },
    "UserCollection": collection_of("User"),
    "PostCollection": collection_of("Post"),
    "TaskCollection": collection_of("Task"),
    "Export": {
        "type": "object",
        "required": ["posts"],
        "properties": {
            "version": {"type": "integer", "examples": [2]},
            "profile": {
                "type": "object",
                "properties": {
                    "username": {"type": "string"},
                    "about_me": {"type": ["string", "null"]},
                    "avatar": {"type": ["string", "null"], "description": "file name"},
                },
            },
            "posts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["body", "timestamp"],
                    "properties": {
                        "id": {"type": "integer"},
                        "body": {"type": "string"},
                        "timestamp": TIMESTAMP,
                    },
                },
            },
            "following": {"type": "array", "items": {"type": "string"}},
        },
    },
}


def _error(description: str, headers: dict | None = None) -> dict:
    response = {
        "description": description,
        "content": {"application/json": {"schema": ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _header(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


ERROR_RESPONSES = {
    400: _error("The JSON, a field or a query parameter is invalid."),
    401: _error(
        "Missing or bad credentials.",
        {"WWW-Authenticate": _header("`Bearer` or `Basic`, with a realm.")},
    ),
    403: _error("Not allowed for this user."),
    404: _error("No such resource."),
    405: _error("Method not allowed.", {"Allow": _header("The allowed methods.")}),
    409: _error("Conflicts with the current state."),
    413: _error("The request body is too large."),
    415: _error("The body is not `application/json`."),
    429: _error(
        "Too many requests.",
        {"Retry-After": _header("Seconds to wait.", {"type": "string", "pattern": "^[0-9]+$"})},
    ),
    503: _error("A service the request needs (the mail server) is unavailable; try again."),
}


def errors(*codes: int) -> dict:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


def json_response(description: str, schema: dict, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def created_response(description: str, schema: dict) -> dict:
    return json_response(description, schema, {"Location": _header("The new resource's URL.")})


ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}
PAGE = [
    {
        "name": "page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
    },
    {
        "name": "per_page",
        "in": "query",
        "description": f"Items per page; values above {MAX_PER_PAGE} count as {MAX_PER_PAGE}.",
        "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_PER_PAGE},
    },
]

# Security requirements: the scheme's name and its (OAuth-only, so empty) scopes.
TOKEN_AUTH: list[dict[str, list[str]]] = [{"token": []}]
BASIC_AUTH: list[dict[str, list[str]]] = [{"basic": []}]
NO_AUTH: list[dict[str, list[str]]] = []

PATHS: dict = {}


def operation(
    method: str,
    path: str,
    summary: str,
    responses: dict,
    *,
    tag: str,
    parameters: list | None = None,
    body: str | None = None,
    security: list = TOKEN_AUTH,
) -> None:
    """Add one operation to PATHS; token-protected ones also document 401."""
    if security == TOKEN_AUTH or security == BASIC_AUTH:
        responses = {**responses, **errors(401)}
    if body:
        responses = {**responses, **errors(400, 413, 415)}
    entry = {
        "operationId": f"{method}_{path}".replace("/", "_").replace("{", "").replace("}", ""),
        "summary": summary,
        "tags": [tag],
        "security": security,
        "responses": dict(sorted(responses.items())),
    }
    if parameters:
        entry["parameters"] = parameters
    if body:
        entry["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    PATHS.setdefault(path, {})[method] = entry


def document() -> dict:
    """The whole document, as a fresh dict (callers may modify it)."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "Microblog API",
                "version": "1.0",
                "description": (
                    "Get a token with HTTP Basic auth at `POST /api/tokens`, then send "
                    "`Authorization: Bearer <token>`. Tokens last one hour. Errors are "
                    '`{"error": "<HTTP reason>", "message": "..."}`.'
                ),
            },
            "security": TOKEN_AUTH,
            "paths": PATHS,
            "components": {
                "schemas": SCHEMAS,
                "responses": {f"E{code}": r for code, r in ERROR_RESPONSES.items()},
                "securitySchemes": {
                    "token": {"type": "http", "scheme": "bearer"},
                    "basic": {"type": "http", "scheme": "basic"},
                },
            },
        }
    )


# --- the operations ---------------------------------------------------------------------

operation(
    "post",
    "/api/tokens",
    "Get a bearer token (valid one hour) with HTTP Basic auth",
    {"200": json_response("A new token.", ref("Token")), **errors(429)},
    tag="tokens",
    security=BASIC_AUTH,
)
operation(
    "delete",
    "/api/tokens",
    "Revoke the token used for this request",
    {"204": {"description": "Revoked."}},
    tag="tokens",
)
operation(
    "get",
    "/api/users",
    "All users, by id",
    {"200": json_response("A page of users.", ref("UserCollection")), **errors(400)},
    tag="users",
    parameters=PAGE,
)
operation(
    "post",
    "/api/users",
    "Register a new account (the web registration form's rules; a few per client address and "
    "hour); 403 when the site's registration is closed (MICROBLOG_REGISTRATION=closed)",
    {"201": created_response("The new user.", ref("User")), **errors(403, 409, 429)},
    tag="users",
    body="NewUser",
    security=NO_AUTH,
)
operation(
    "get",
    "/api/users/{id}",
    "One user; `email` only for the token's owner",
    {"200": json_response("The user.", ref("User")), **errors(404)},
    tag="users",
    parameters=[ID],
)
operation(
    "put",
    "/api/users/{id}",
    "Change your own username, about_me, or email (with `current_password`, once confirmed)",
    {
        "200": json_response("The updated user.", ref("User")),
        **errors(403, 404, 409, 429, 503),
    },
    tag="users",
    parameters=[ID],
    body="UserUpdate",
)
TASK_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
TASK_CONFLICT = json_response(
    "Another task of that name is active, or the task is over.", ref("TaskConflict")
)
operation(
    "delete",
    "/api/users/{id}",
    "Delete your own account (with `current_password`): it is locked and every token, this "
    "one included, revoked at once; the worker then deletes everything in it (the task goes "
    "with the account). The last enabled admin is refused (409): make another admin first",
    {
        "202": created_response("The queued deletion task.", ref("Task")),
        "204": {"description": "Deleted already: the worker finished before this answer."},
        **errors(403, 404, 409, 429),
    },
    tag="users",
    parameters=[ID],
    body="AccountDeletion",
)
operation(
    "put",
    "/api/users/{id}/avatar",
    "Change your own picture: the image itself as the body, or multipart/form-data with "
    "`file`; the worker makes the avatar of it. A file that is empty, too large, or not a PNG, "
    "JPEG or WebP picture is refused at once",
    {"202": created_response("The queued task.", ref("Task")), "409": TASK_CONFLICT},
    tag="users",
    parameters=[ID],
)
# The body is a file, not JSON: its own request body, and the errors of a bad one.
_avatar = PATHS["/api/users/{id}/avatar"]["put"]
_avatar["responses"] = dict(sorted({**_avatar["responses"], **errors(400, 403, 404, 413)}.items()))
_avatar["requestBody"] = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": ref("NewAvatar")},
        **{
            media_type: {"schema": {"type": "string", "contentMediaType": media_type}}
            for media_type in ("image/png", "image/jpeg", "image/webp", "application/octet-stream")
        },
    },
}
for _relation in ("followers", "following"):
    operation(
        "get",
        f"/api/users/{{id}}/{_relation}",
        f"The user's {_relation}",
        {"200": json_response("A page of users.", ref("UserCollection")), **errors(400, 404)},
        tag="users",
        parameters=[ID, *PAGE],
    )
operation(
    "get",
    "/api/users/{id}/posts",
    "The user's posts, newest first",
    {"200": json_response("A page of posts.", ref("PostCollection")), **errors(400, 404)},
    tag="posts",
    parameters=[ID, *PAGE],
)
operation(
    "get",
    "/api/timeline",
    "The token owner's home timeline, newest first",
    {"200": json_response("A page of posts.", ref("PostCollection")), **errors(400)},
    tag="posts",
    parameters=PAGE,
)
operation(
    "post",
    "/api/posts",
    f"Publish a post (1-{POST_MAX} characters)",
    {"201": created_response("The new post.", ref("Post"))},
    tag="posts",
    body="NewPost",
)
operation(
    "get",
    "/api/posts/{id}",
    "One post",
    {"200": json_response("The post.", ref("Post")), **errors(404)},
    tag="posts",
    parameters=[ID],
)
operation(
    "post",
    "/api/tasks",
    "Start a background task (`export_posts`; `import_posts` with an uploaded file, as "
    "multipart/form-data); it runs in the worker",
    {"202": created_response("The queued task.", ref("Task")), "409": TASK_CONFLICT},
    tag="tasks",
    body="NewTask",
)
# The same operation takes an uploaded file, for the tasks that read one.
PATHS["/api/tasks"]["post"]["requestBody"]["content"]["multipart/form-data"] = {
    "schema": ref("NewUploadTask")
}
operation(
    "get",
    "/api/tasks",
    "Your task history, newest first",
    {"200": json_response("A page of tasks.", ref("TaskCollection")), **errors(400)},
    tag="tasks",
    parameters=PAGE,
)
operation(
    "get",
    "/api/tasks/{id}",
    "One of your tasks: status, progress, message and links",
    {"200": json_response("The task.", ref("Task")), **errors(404)},
    tag="tasks",
    parameters=[TASK_ID],
)
operation(
    "post",
    "/api/tasks/{id}/cancel",
    "Cancel a queued or running task",
    {
        "200": json_response("The task, cancelled or cancelling.", ref("Task")),
        "409": TASK_CONFLICT,
        **errors(404),
    },
    tag="tasks",
    parameters=[TASK_ID],
)
operation(
    "get",
    "/api/tasks/{id}/download",
    "The export file of a finished task (`posts.json`)",
    {
        "200": json_response("The export: the task owner's posts, oldest first.", ref("Export")),
        "409": TASK_CONFLICT,
        **errors(404),
    },
    tag="tasks",
    parameters=[TASK_ID],
)
operation(
    "get",
    "/api/openapi.json",
    "This document",
    {"200": json_response("The OpenAPI document.", {"type": "object"})},
    tag="meta",
    security=NO_AUTH,
)
