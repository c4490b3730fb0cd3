"""The JSON API under /api: tokens, users, posts and tasks, tutorial-compatible.

Clients get a token with HTTP Basic auth (`POST /api/tokens`) and send it as
`Authorization: Bearer <token>`. Everything under /api answers in JSON, errors
included: `{"error": "<HTTP reason>", "message": "..."}`.

Building blocks for new endpoints: `token_auth_required` + `token_user()`,
`json_body()`, `validate_form()`, `paginated()`, `api_abort()` / `error_response()`,
and a matching entry in `api_spec.py`.
"""

import functools
import io
import re
from collections.abc import Set
from typing import NoReturn

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, g, jsonify, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    default_exceptions,
)
from werkzeug.http import HTTP_STATUS_CODES

import api_spec
import avatars
import ratelimit
import tasks
from forms import AccountForm, DeleteAccountForm, NewUserForm, PostForm, filled, first_error
from models import (
    REGISTRATION_CLOSED,
    ApiToken,
    Post,
    Task,
    User,
    db,
    isoformat_utc,
    registration_open,
)

bp = Blueprint("api", __name__, url_prefix="/api")

DEFAULT_PER_PAGE = api_spec.DEFAULT_PER_PAGE
MAX_PER_PAGE = api_spec.MAX_PER_PAGE
MAX_PAGE = api_spec.MAX_PAGE
REALM = "microblog"


def init_app(app):
    """Mount the API on `app`: routes, JSON errors, and no CSRF (it uses tokens, not cookies)."""
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(bp)
    app.before_request(json_routing_errors)


# --- errors -------------------------------------------------------------------------


def error_response(status: int, message: str | None = None, headers=None, **extra):
    """A JSON error: `{"error": reason, "message": ...}` plus any `extra` fields."""
    reason = HTTP_STATUS_CODES.get(status, "Unknown Error")
    # `error` is the status line (a fixed key for programs); `message` is in the client's
    # language (Accept-Language).
    response = jsonify({"error": reason, "message": str(message or reason), **extra})
    response.status_code = status
    for name, value in dict(headers or {}).items():
        response.headers[name] = value
    return response


def api_abort(status: int, message: str | None = None, headers=None, **extra) -> NoReturn:
    """Stop the request with a JSON error (see `error_response`)."""
    abort(error_response(status, message, headers, **extra))


def http_error_response(error: HTTPException):
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


def _handle_http_error(error: HTTPException):
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


def json_routing_errors():
    """404/405 for unknown /api URLs in JSON.

    A URL that matches no route belongs to no blueprint, so the blueprint's handlers
    never see it; this app-level hook runs before Flask raises the routing error.
    """
    error = request.routing_exception
    if isinstance(error, HTTPException) and (error.code or 0) >= 400 and is_api_request():
        return http_error_response(error)
    return None


# --- authentication -----------------------------------------------------------------


def unauthorized(scheme: str, message: str):
    return error_response(401, message, {"WWW-Authenticate": f'{scheme} realm="{REALM}"'})


def token_user() -> User:
    """The user whose bearer token authenticated this request."""
    return g.api_token.user


def auth_required(scheme: str, authenticate):
    """A decorator: `authenticate(request.authorization)` returns None, or why it refused."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            refusal = authenticate(request.authorization)
            if refusal:
                return unauthorized(scheme, refusal)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def _check_bearer_token(auth) -> str | None:
    """A valid, unexpired bearer token: its row goes to `g.api_token`."""
    if auth is None or auth.type != "bearer" or not auth.token:
        return _("Send a token: 'Authorization: Bearer <token>'.")
    token = ApiToken.find(auth.token)
    if token is None:
        return _("The token is invalid or has expired.")
    g.api_token = token
    if token.user.seen_now():
        db.session.commit()
    return None


def _check_basic_credentials(auth) -> str | None:
    """A username and password (rate limited per client IP and username): `g.basic_user`."""
    if auth is None or auth.type != "basic" or not auth.username:
        return _("Send your username and password with HTTP Basic auth.")
    enforce_token_rate_limit(auth.username)
    user = User.authenticate(auth.username, auth.password or "")
    if user is None:
        return _("Invalid username or password.")
    g.basic_user = user
    return None


token_auth_required = auth_required("Bearer", _check_bearer_token)
basic_auth_required = auth_required("Basic", _check_basic_credentials)


def enforce_token_rate_limit(username: str) -> None:
    """429 with Retry-After when this client address, or this address for this username,
    asked too often. Never per username alone: a flood from elsewhere must not lock the
    owner out."""
    refuse_if_limited(ratelimit.api_token(username), "token requests")


# What a 429 says, per kind of attempt (whole sentences, for translations).
TOO_MANY = {
    "token requests": _l("Too many token requests; try again in %(seconds)s seconds."),
    "new accounts from your address": _l(
        "Too many new accounts from your address; try again in %(seconds)s seconds."
    ),
    "password attempts": _l("Too many password attempts; try again in %(seconds)s seconds."),
}


def refuse_if_limited(retry_after: int, what: str) -> None:
    """A 429 with Retry-After when a rate limit (`ratelimit.*`) refused."""
    if retry_after:
        api_abort(
            429,
            str(TOO_MANY[what]) % {"seconds": retry_after},
            {"Retry-After": str(retry_after)},
        )


# --- request bodies and validation ----------------------------------------------------


def json_body(
    allowed: Set[str],
    required: Set[str] = frozenset(),
    ignored: Set[str] = frozenset(),
    nullable: Set[str] = frozenset(),
) -> dict[str, str]:
    """The request's JSON object, whose fields must all be strings from `allowed`.

    Names in `ignored` are dropped first (the read-only fields of an object the API
    returned, sent back whole by a client); a null in a `nullable` field reads as "".
    """
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
    data = {name: value for name, value in data.items() if name not in ignored}
    data.update({name: "" for name in nullable if name in data and data[name] is None})
    unknown = sorted(set(data) - allowed)
    if unknown:
        api_abort(400, _("Unknown fields: %(fields)s.", fields=", ".join(unknown)))
    missing = sorted(required - set(data))
    if missing:
        api_abort(400, _("Missing fields: %(fields)s.", fields=", ".join(missing)))
    wrong_type = sorted(name for name, value in data.items() if not isinstance(value, str))
    if wrong_type:
        api_abort(400, _("These fields must be strings: %(fields)s.", fields=", ".join(wrong_type)))
    not_text = sorted(name for name, value in data.items() if not is_unicode_text(value))
    if not_text:
        api_abort(
            400,
            _("These fields are not valid Unicode text: %(fields)s.", fields=", ".join(not_text)),
        )
    return data


def is_unicode_text(value: str) -> bool:
    """False for a string with a lone UTF-16 surrogate (JSON's "\\ud800"): it is not text,
    and neither the database nor the password hash can take it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_form(form_class, fields: dict[str, str], *args, renamed: dict | None = None):
    """Validate `fields` with a web form (minus CSRF) so API and web share their rules.

    `renamed` maps form field names to the API's in error reports ({"post": "body"}).
    """
    form = filled(form_class, fields, *args)
    if form.errors:
        renamed = renamed or {}
        errors = {renamed.get(name, name): messages for name, messages in form.errors.items()}
        api_abort(400, first_error(form), errors=errors)
    return form


# --- pagination ------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")


def int_arg(name: str, default: int, maximum: int, cap: bool = False) -> int:
    """A positive integer query argument up to `maximum` (or capped to it); else 400."""
    value = request.args.get(name)
    if value is None:
        return default
    if not _DIGITS.fullmatch(value):
        api_abort(400, _("'%(name)s' must be a whole number from 1.", name=name))
    # Longer digit strings are simply too big (and int() refuses over 4300 digits).
    number = int(value) if len(value) <= 18 else maximum + 1
    if cap:
        number = min(number, maximum)
    if not 1 <= number <= maximum:
        api_abort(
            400, _("'%(name)s' must be a whole number from 1 to %(max)s.", name=name, max=maximum)
        )
    return number


def paginated(query: sa.Select, to_dict, endpoint: str, total=None, **url_args) -> dict:
    """A collection page: `items`, `_meta` and `_links`, from `?page=&per_page=`.

    `total`, when given, is the item count, for queries whose own COUNT would be slow.
    """
    page = int_arg("page", 1, MAX_PAGE)
    # Any positive per_page is accepted and capped, as in the tutorial.
    per_page = int_arg("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE, cap=True)
    pagination = db.paginate(
        query, page=page, per_page=per_page, error_out=False, count=total is None
    )
    if total is not None:
        pagination.total = total

    def link(number):
        return url_for(endpoint, page=number, per_page=per_page, **url_args)

    return {
        "items": [to_dict(item) for item in pagination.items],
        "_meta": {
            "page": page,
            "per_page": per_page,
            "total_pages": pagination.pages,
            "total_items": pagination.total,
        },
        "_links": {
            "self": link(page),
            "next": link(page + 1) if pagination.has_next else None,
            "prev": link(page - 1) if pagination.has_prev else None,
        },
    }


def created(payload: dict, location: str, status: int = 201):
    """201 (or 202 for accepted background work) with `payload` and a `Location` header."""
    response = jsonify(payload)
    response.status_code = status
    response.headers["Location"] = location
    return response


# --- representations --------------------------------------------------------------------


def user_to_dict(user: User, include_email: bool | None = None) -> dict:
    """A user as the API shows it; the email only to its owner (the token's user)."""
    data = {
        "id": user.id,
        "username": user.username,
        "about_me": user.about_me,
        "last_seen": isoformat_utc(user.last_seen),
        "post_count": user.posts_count(),
        "follower_count": user.followers_count(),
        "following_count": user.following_count(),
        "_links": {
            "self": url_for("api.get_user", id=user.id),
            "followers": url_for("api.get_followers", id=user.id),
            "following": url_for("api.get_following", id=user.id),
            "posts": url_for("api.get_user_posts", id=user.id),
            "avatar": user.avatar(128),
        },
    }
    if include_email is None:
        include_email = "api_token" in g and g.api_token.user_id == user.id
    if include_email:
        data["email"] = user.email
    return data


def post_to_dict(post: Post) -> dict:
    return {
        "id": post.id,
        "body": post.body,
        "timestamp": isoformat_utc(post.timestamp),
        "language": post.known_language,
        "author": {"id": post.author.id, "username": post.author.username},
        "_links": {
            "self": url_for("api.get_post", id=post.id),
            "author": url_for("api.get_user", id=post.user_id),
        },
    }


# What a 404 says, per kind of thing.
NOT_FOUND = {
    "User": _l("No user with id %(id)s."),
    "Post": _l("No post with id %(id)s."),
}


def get_or_404(model, id: int):
    """The row, or a JSON 404 naming what was not found."""
    # Out-of-range ids would overflow the database's integer type: they exist nowhere.
    row = db.session.get(model, id) if 0 < id <= api_spec.MAX_ID else None
    if row is None:
        api_abort(404, str(NOT_FOUND[model.__name__]) % {"id": id})
    return row


# --- tokens -----------------------------------------------------------------------------


@bp.post("/tokens")
@basic_auth_required
def get_token():
    """Trade a username and password for a bearer token valid for an hour."""
    token, row = ApiToken.issue(g.basic_user)
    db.session.commit()
    return {"token": token, "expires_at": isoformat_utc(row.expires_at)}


@bp.delete("/tokens")
@token_auth_required
def revoke_token():
    """Revoke the token that authenticated this request."""
    g.api_token.revoke()
    db.session.commit()
    return "", 204


# --- users ------------------------------------------------------------------------------


@bp.get("/users/<int:id>")
@token_auth_required
def get_user(id):
    return user_to_dict(get_or_404(User, id))


@bp.get("/users")
@token_auth_required
def get_users():
    return paginated(sa.select(User).order_by(User.id), user_to_dict, "api.get_users")


@bp.get("/users/<int:id>/followers", endpoint="get_followers", defaults={"relation": "followers"})
@bp.get("/users/<int:id>/following", endpoint="get_following", defaults={"relation": "following"})
@token_auth_required
def get_related_users(id, relation):
    """The user's followers, or the users they follow, by id."""
    user = get_or_404(User, id)
    query = getattr(user, relation).select().order_by(User.id)
    return paginated(query, user_to_dict, f"api.get_{relation}", id=id)


# What the API itself returns in a user but never takes back: a client may PUT the
# whole object it fetched (as the tutorial's client does) and these are skipped.
USER_READ_ONLY = {"id", "last_seen", "post_count", "follower_count", "following_count", "_links"}


@bp.post("/users")
def create_user():
    """Register, with exactly the web registration form's rules (403 when it is closed)."""
    if not registration_open():
        api_abort(403, _(REGISTRATION_CLOSED))
    required = {"username", "email", "password"}
    data = json_body(
        allowed=required | {"about_me"},
        required=required,
        ignored=USER_READ_ONLY,
        nullable={"about_me"},
    )
    form = validate_form(NewUserForm, {**data, "password2": data["password"]})
    refuse_if_limited(ratelimit.registration(), "new accounts from your address")
    user = User.register(
        form.username.data, form.email.data, form.password.data, form.about_me.data or None
    )
    commit_or_conflict(_("That username or email address is already registered."))
    # The caller owns the new account, so it sees the email.
    return created(user_to_dict(user, include_email=True), url_for("api.get_user", id=user.id))


@bp.put("/users/<int:id>")
@token_auth_required
def update_user(id):
    """Change your own username or about_me; others' accounts are 403.

    A new email also needs `current_password`, and takes effect only once the link mailed
    to the new address is opened (the current address is told); until then the answer
    shows the current address. The same email sent back (a whole fetched user) is no change.
    """
    user = own_account(id)
    data = json_body(
        allowed={"username", "email", "about_me", "current_password"},
        ignored=USER_READ_ONLY,
        nullable={"about_me"},
    )
    current = {"username": user.username, "email": user.email, "about_me": user.about_me or ""}
    form = validate_form(AccountForm, {**current, **data}, user)
    # The same address (maybe re-cased) is the same mailbox: no password, no confirmation.
    same_address = User.by_email(form.email.data) == user
    new_email = None if same_address else form.email.data
    if new_email:
        needed = _("Changing the email address needs your password in 'current_password'.")
        check_current_password(user, data.get("current_password"), needed)
    user.update_profile(
        username=form.username.data,
        about_me=form.about_me.data,
        email=form.email.data if same_address else None,
    )
    commit_or_conflict(_("That username or email address is already registered."))
    if new_email:
        try:  # the worker writes and sends it: a slow mail server holds no request
            tasks.send_email_change(user.id, new_email)
        except Exception:
            current_app.logger.exception("Could not queue the email change confirmation")
            api_abort(503, _("The confirmation email could not be sent; try again later."))
    return user_to_dict(user)


def own_account(id: int) -> User:
    """The user with that id if it is the token's own (404 when there is none, else 403)."""
    user = get_or_404(User, id)
    if user.id != token_user().id:
        api_abort(403, _("You can only change your own account."))
    return user


def check_current_password(user: User, password: str | None, needed: str) -> None:
    """403 unless `password` is the user's (a stolen token alone cannot take the account);
    guesses count against the same limits as signing in. `needed` says why it is asked."""
    if not password:
        api_abort(403, needed)
    refuse_if_limited(ratelimit.sign_in(user.username), "password attempts")
    if not user.check_password(password):
        api_abort(403, _("The current password is wrong."))


def commit_or_conflict(message: str) -> None:
    """Commit; a unique constraint lost to a concurrent request becomes a 409."""
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()
        api_abort(409, message)


@bp.delete("/users/<int:id>")
@token_auth_required
def delete_user(id):
    """Delete your own account, with `current_password`: it is locked and every token
    revoked at once (this one too), and the worker deletes everything in it; 202 with that
    task, which goes with the account when it ends (204 when it has ended already)."""
    user = own_account(id)
    data = json_body(allowed={"current_password"}, required={"current_password"})
    validate_form(DeleteAccountForm, data)
    needed = _("Deleting the account needs your password in 'current_password'.")
    check_current_password(user, data["current_password"], needed)
    task = tasks.start_account_deletion(user)
    if task is None and Task.active_for(id, "delete_account") is None:
        return "", 204  # the worker was faster: the account, and its task, are gone already
    return accepted(user, task, "delete_account")


@bp.put("/users/<int:id>/avatar")
@token_auth_required
def upload_avatar(id):
    """Change your own picture: the image as the body, or a multipart body with `file`.
    What the worker would refuse at once from the file's size and header is a 413 or a 400
    here; 202 with the task that makes the avatar of it."""
    user = own_account(id)
    if request.mimetype == "multipart/form-data":
        data = uploaded_file().read()
    else:
        data = request.get_data(cache=False)
    try:
        tasks.check_avatar(data)
    except avatars.AvatarTooLarge as error:
        api_abort(413, error.shown())
    except avatars.AvatarError as error:
        api_abort(400, error.shown())
    task = tasks.start_avatar(user, FileStorage(io.BytesIO(data)))
    return accepted(user, task, "process_avatar")


# --- posts ------------------------------------------------------------------------------


@bp.get("/users/<int:id>/posts")
@token_auth_required
def get_user_posts(id):
    user = get_or_404(User, id)
    return paginated(user.posts_select(), post_to_dict, "api.get_user_posts", id=id)


@bp.get("/timeline")
@token_auth_required
def get_timeline():
    """The token owner's home timeline: their posts and those of people they follow."""
    user = token_user()
    # The timeline query walks the timestamp index; counting it that way would scan every post.
    return paginated(
        user.following_posts(), post_to_dict, "api.get_timeline", total=user.following_posts_count()
    )


@bp.get("/posts/<int:id>")
@token_auth_required
def get_post(id):
    return post_to_dict(get_or_404(Post, id))


@bp.post("/posts")
@token_auth_required
def create_post():
    """Publish a post (1 to POST_MAX characters as models.text_length counts: the form's rules)."""
    data = json_body(allowed={"body"}, required={"body"})
    form = validate_form(PostForm, {"post": data["body"]}, renamed={"post": "body"})
    post = token_user().publish(form.post.data)
    db.session.commit()
    return created(post_to_dict(post), url_for("api.get_post", id=post.id))


# --- background tasks ------------------------------------------------------------------------


def task_to_dict(task: Task) -> dict:
    """A task as the API shows it; `_links.download` only once the export is ready."""
    task_links = {
        "self": url_for("api.get_task", id=task.id),
        "cancel": url_for("api.cancel_task", id=task.id),
    }
    if task.has_download:
        task_links["download"] = url_for("api.download_task", id=task.id)
    return {
        "id": task.id,
        "name": task.name,
        "description": task.description,
        "status": task.status,
        "progress": task.progress,
        "message": task.status_text,
        "created_at": isoformat_utc(task.created_at),
        "started_at": isoformat_utc(task.started_at),
        "finished_at": isoformat_utc(task.finished_at),
        "result_size": task.result_size if task.has_download else None,
        "_links": task_links,
    }


def own_task(id: str) -> Task:
    """The token user's task with that id; anyone else's is a 404, as if it did not exist."""
    return db.first_or_404(Task.owned_by(token_user().id, id), description=f"No task with id {id}.")


@bp.post("/tasks")
@token_auth_required
def create_task():
    """Start a background task; 202 with the task, or 409 with the one already active.

    A JSON body names a task that needs nothing else; a multipart/form-data body names one
    that reads an uploaded file (field `file`), such as `import_posts`.
    """
    user = token_user()
    if request.mimetype == "multipart/form-data":
        task = start_upload_task(user)
        name = request.form["name"]
    else:
        name = json_body(allowed={"name"}, required={"name"})["name"]
        if name not in tasks.USER_TASKS:
            known = ", ".join(sorted([*tasks.USER_TASKS, *tasks.UPLOAD_TASKS]))
            api_abort(
                400, _("Unknown task %(name)r; known tasks: %(known)s.", name=name, known=known)
            )
        task = tasks.USER_TASKS[name](user)
    return accepted(user, task, name)


def accepted(user: User, task: Task | None, name: str):
    """202 with the task just started, or 409 with the `name` task already active (None)."""
    if task is None:
        active = Task.active_for(user.id, name)
        extra = {"task": task_to_dict(active)} if active else {}
        api_abort(409, _("A %(name)s task is already in progress.", name=name), **extra)
    return created(task_to_dict(task), url_for("api.get_task", id=task.id), status=202)


def start_upload_task(user: User) -> Task | None:
    """Start the task named by the multipart form's `name` with its `file`."""
    name = request.form.get("name", "")
    if name not in tasks.UPLOAD_TASKS:
        known = ", ".join(sorted(tasks.UPLOAD_TASKS))
        api_abort(400, f"Unknown task {name!r} for an uploaded file; known tasks: {known}.")
    return tasks.UPLOAD_TASKS[name](user, uploaded_file())


def uploaded_file() -> FileStorage:
    """The multipart form's `file`; 400 without one."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        api_abort(400, "Missing the uploaded file (form field 'file').")
    return upload


@bp.get("/tasks")
@token_auth_required
def get_tasks():
    """The token user's task history, newest first."""
    return paginated(token_user().tasks_select(), task_to_dict, "api.get_tasks")


@bp.get("/tasks/<id>")
@token_auth_required
def get_task(id):
    return task_to_dict(own_task(id))


@bp.post("/tasks/<id>/cancel")
@token_auth_required
def cancel_task(id):
    """Cancel a queued task at once, or a running one at its next progress tick."""
    task = own_task(id)
    if task.cancel(tasks.huey) is None:
        db.session.refresh(task)
        api_abort(
            409, _("The task is already %(status)s.", status=task.status), task=task_to_dict(task)
        )
    db.session.refresh(task)
    return task_to_dict(task)


@bp.get("/tasks/<id>/download")
@token_auth_required
def download_task(id):
    """The export file (`posts.json`) of a finished task."""
    task = own_task(id)
    if task.is_active:
        api_abort(409, _("The task has not finished yet."), task=task_to_dict(task))
    download = tasks.send_export(task)
    if download is None:
        api_abort(404, _("This task has no download (it failed, was cancelled or expired)."))
    return download


# --- the contract ---------------------------------------------------------------------------


@bp.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3.1 description of everything under /api."""
    return api_spec.document()
