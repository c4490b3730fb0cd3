"""The JSON API under /api: tokens, users, posts and tasks, tutorial-compatible.

Clients get a token with HTTP Basic auth (`POST /api/tokens`) and send it as
`Authorization: Bearer <token>`. Everything under /api answers in JSON, errors
included: `{"error": "<HTTP reason>", "message": "..."}` (api_errors.py).

Each endpoint is declared once, by `route(...)` (api_contract.py) with the pydantic models
of api_schemas.py as the annotations of its view: they validate the request, the answer is
built from them, and /api/openapi.json is generated from it all. Views parse, call the
model (models.py), and serialise. Other building blocks: `token_user()`, `validate_form()`,
`paginated()`, `api_abort()` / `error_response()`.
"""

import io
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, Response, current_app, g, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import FileStorage

import administration
import api_schemas as schemas
import avatars
import federation_out
import ratelimit
import tasks
from account_deletion import start_account_deletion
from api_auth import refuse_if_limited, token_user
from api_contract import (
    TASK_CONFLICT,
    bp,
    created_response,
    document,
    errors,
    json_response,
    ref,
    route,
)
from api_errors import (
    api_abort,
    error_response,
    json_object,
    json_routing_errors,
    validate_form,
    validated,
    validation_error_response,
)
from api_out import created, paginated, post_out, task_out, user_out
from database import Base, db, isoformat_utc
from exporting import send_export
from forms import AccountForm, DeleteAccountForm, NewUserForm, PostForm
from importing import UPLOAD_TASKS
from jobs import Task
from models import POST_MAX, REGISTRATION_CLOSED, ApiToken, Post, User, registration_open
from timeline import Timeline
from user_tasks import task_history

__all__ = ["bp", "document", "error_response", "init_app"]

# The web pages page through the same database, within the same limit.
MAX_PAGE = schemas.MAX_PAGE


def init_app(app: Flask) -> None:
    """Mount the API on `app`: routes, JSON errors, and no CSRF (it uses tokens, not cookies)."""
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(bp)
    app.before_request(json_routing_errors)
    # flask-openapi3 asks the app how to answer a request its models refuse; the app is a
    # plain Flask (only /api is declared this way), so it is told here.
    # Flask declares no such attribute; flask-openapi3 looks it up on whatever app it is given.
    app.validation_error_callback = validation_error_response  # type: ignore[attr-defined]


# What a 404 says, per kind of thing.
NOT_FOUND = {
    "User": _l("No user with id %(id)s."),
    "Post": _l("No post with id %(id)s."),
}


# A mapped class, User or Post: `get_or_404` gives back one of its rows.
Row = TypeVar("Row", bound=Base)


def get_or_404(model: type[Row], id: int) -> Row:
    """The row, or a JSON 404 naming what was not found."""
    # Out-of-range ids would overflow the database's integer type: they exist nowhere.
    row = db.session.get(model, id) if 0 < id <= schemas.MAX_ID else None
    if row is None:
        api_abort(404, str(NOT_FOUND[model.__name__]) % {"id": id})
    return row


# --- tokens -----------------------------------------------------------------------------


@route(
    "post",
    "/tokens",
    "Get a bearer token (valid one hour) with HTTP Basic auth",
    {200: json_response("A new token.", schemas.Token), **errors(429)},
    tag="tokens",
    auth="basic",
)
def get_token() -> dict[str, Any]:
    """Trade a username and password for a bearer token valid for an hour."""
    token, row = ApiToken.issue(g.basic_user)
    db.session.commit()
    return schemas.Token(token=token, expires_at=isoformat_utc(row.expires_at)).dump()


@route(
    "delete",
    "/tokens",
    "Revoke the token used for this request",
    {204: {"description": "Revoked."}},
    tag="tokens",
)
def revoke_token() -> tuple[str, int]:
    g.api_token.revoke()
    db.session.commit()
    return "", 204


# --- users ------------------------------------------------------------------------------

PAGE_OF_USERS = {200: json_response("A page of users.", schemas.UserCollection)}


@route(
    "get",
    "/users/<int:id>",
    "One user; `email` only for the token's owner",
    {200: json_response("The user.", schemas.User), **errors(404)},
    tag="users",
)
def get_user(path: schemas.UserId) -> dict[str, Any]:
    return user_out(get_or_404(User, path.id)).dump()


@route("get", "/users", "All users, by id", PAGE_OF_USERS, tag="users")
def get_users(query: schemas.Paging) -> dict:
    select = sa.select(User).order_by(User.id)
    return paginated(select, user_out, "api.get_users", query, schemas.UserCollection)


def related_users(id: int, relation: str, paging: schemas.Paging) -> dict:
    """The user's followers, or the users they follow, by id."""
    user = get_or_404(User, id)
    select = getattr(user, relation).select().order_by(User.id)
    endpoint = f"api.get_{relation}"
    return paginated(select, user_out, endpoint, paging, schemas.UserCollection, id=id)


@route(
    "get",
    "/users/<int:id>/followers",
    "The user's followers",
    {**PAGE_OF_USERS, **errors(404)},
    tag="users",
)
def get_followers(path: schemas.UserId, query: schemas.Paging) -> dict:
    return related_users(path.id, "followers", query)


@route(
    "get",
    "/users/<int:id>/following",
    "The users the user follows",
    {**PAGE_OF_USERS, **errors(404)},
    tag="users",
)
def get_following(path: schemas.UserId, query: schemas.Paging) -> dict:
    return related_users(path.id, "following", query)


@route(
    "post",
    "/users",
    "Register a new account (the web registration form's rules; a few per client address and "
    "hour); 403 when the site's registration is closed (MICROBLOG_REGISTRATION=closed)",
    {201: created_response("The new user.", schemas.User), **errors(403, 409, 429)},
    tag="users",
    auth=None,
)
def create_user(body: schemas.NewUser) -> Response:
    """Register, with exactly the web registration form's rules (403 when it is closed)."""
    if not registration_open():
        api_abort(403, _(REGISTRATION_CLOSED))
    data = body.sent()
    form = validate_form(NewUserForm, {**data, "password2": data["password"]})
    refuse_if_limited(ratelimit.registration(), "new accounts")
    user = User.register(
        form.username.data, form.email.data, form.password.data, form.about_me.data or None
    )
    commit_or_conflict(_("That username or email address is already registered."))
    # The caller owns the new account, so it sees the email.
    location = url_for("api.get_user", id=user.id)
    return created(user_out(user, include_email=True).dump(), location)


@route(
    "put",
    "/users/<int:id>",
    "Change your own username, about_me, or email (with `current_password`, once confirmed)",
    {200: json_response("The updated user.", schemas.User), **errors(403, 404, 409, 429, 503)},
    tag="users",
)
def update_user(path: schemas.UserId, body: schemas.UserUpdate) -> dict[str, Any]:
    """Change your own username or about_me; others' accounts are 403.

    A new email also needs `current_password`, and takes effect only once the link mailed
    to the new address is opened (the current address is told); until then the answer
    shows the current address. The same email sent back (a whole fetched user) is no change.
    """
    user = own_account(path.id)
    data = body.sent()
    current = {
        "username": user.username,
        "email": user.email or "",
        "about_me": user.about_me or "",
    }
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
    federation_out.profile_updated(user)
    if new_email:
        try:  # the worker writes and sends it: a slow mail server holds no request
            tasks.send_email_change(user.id, new_email)
        except Exception:
            current_app.logger.exception("Could not queue the email change confirmation")
            api_abort(503, _("The confirmation email could not be sent; try again later."))
    return user_out(user).dump()


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


@route(
    "delete",
    "/users/<int:id>",
    "Delete your own account (with `current_password`): it is locked and every token, this "
    "one included, revoked at once; the worker then deletes everything in it (the task goes "
    "with the account). The last enabled admin is refused (409): make another admin first",
    {
        202: created_response("The queued deletion task.", schemas.Task),
        204: {"description": "Deleted already: the worker finished before this answer."},
        409: TASK_CONFLICT,
        **errors(403, 404, 429),
    },
    tag="users",
)
def delete_user(path: schemas.UserId, body: schemas.AccountDeletion) -> Response | tuple[str, int]:
    """Delete your own account, with `current_password`: it is locked and every token
    revoked at once (this one too), and the worker deletes everything in it; 202 with that
    task, which goes with the account when it ends (204 when it has ended already)."""
    user = own_account(path.id)
    validate_form(DeleteAccountForm, body.sent())
    needed = _("Deleting the account needs your password in 'current_password'.")
    check_current_password(user, body.current_password, needed)
    refusal = administration.refuse_leaving_no_admin(user)
    if refusal:
        api_abort(409, _(refusal))
    task = start_account_deletion(user)
    if task is None and Task.active_for(path.id, "delete_account") is None:
        return "", 204  # the worker was faster: the account, and its task, are gone already
    return accepted(user, task, "delete_account")


# The picture is a file, not JSON: the image itself, or a form with `file`.
AVATAR_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": ref(schemas.NewAvatar)},
        **{
            media_type: {"schema": {"type": "string", "contentMediaType": media_type}}
            for media_type in ("image/png", "image/jpeg", "image/webp", "application/octet-stream")
        },
    },
}


@route(
    "put",
    "/users/<int:id>/avatar",
    "Change your own picture: the image itself as the body, or multipart/form-data with "
    "`file`; the worker makes the avatar of it. A file that is empty, too large, or not a PNG, "
    "JPEG or WebP picture is refused at once",
    {
        202: created_response("The queued task.", schemas.Task),
        409: TASK_CONFLICT,
        **errors(403, 404),
    },
    tag="users",
    request_body=AVATAR_BODY,
)
def upload_avatar(path: schemas.UserId) -> Response:
    """Change your own picture. What the worker would refuse at once from the file's size
    and header is a 413 or a 400 here; 202 with the task that makes the avatar of it."""
    user = own_account(path.id)
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

PAGE_OF_POSTS = {200: json_response("A page of posts.", schemas.PostCollection)}


@route(
    "get",
    "/users/<int:id>/posts",
    "The user's posts, newest first",
    {**PAGE_OF_POSTS, **errors(404)},
    tag="posts",
)
def get_user_posts(path: schemas.UserId, query: schemas.Paging) -> dict:
    user = get_or_404(User, path.id)
    return paginated(
        user.posts_select(),
        post_out,
        "api.get_user_posts",
        query,
        schemas.PostCollection,
        id=user.id,
    )


@route(
    "get", "/timeline", "The token owner's home timeline, newest first", PAGE_OF_POSTS, tag="posts"
)
def get_timeline(query: schemas.Paging) -> dict:
    """The token owner's home timeline: their posts and those of people they follow."""
    user = token_user()
    # The timeline query walks the timestamp index; counting it that way would scan every post.
    timeline = Timeline(user)
    total = timeline.count()
    return paginated(
        timeline.posts(), post_out, "api.get_timeline", query, schemas.PostCollection, total
    )


@route(
    "get",
    "/posts/<int:id>",
    "One post",
    {200: json_response("The post.", schemas.Post), **errors(404)},
    tag="posts",
)
def get_post(path: schemas.PostId) -> dict[str, Any]:
    return post_out(get_or_404(Post, path.id)).dump()


@route(
    "post",
    "/posts",
    f"Publish a post (1-{POST_MAX} characters)",
    {201: created_response("The new post.", schemas.Post)},
    tag="posts",
)
def create_post(body: schemas.NewPost) -> Response:
    """Publish a post, with the web form's rules."""
    form = validate_form(PostForm, {"post": body.body}, renamed={"post": "body"})
    post = token_user().publish(form.post.data)
    db.session.commit()
    federation_out.post_published(post)
    return created(post_out(post).dump(), url_for("api.get_post", id=post.id))


# --- background tasks ------------------------------------------------------------------------


def own_task(id: str) -> Task:
    """The token user's task with that id; anyone else's is a 404, as if it did not exist."""
    missing = _("No task with id %(id)s.", id=id)
    return db.first_or_404(Task.owned_by(token_user().id, id), description=missing)


# A task that needs nothing else is named in JSON; one that reads a file, in a form with it.
TASK_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": ref(schemas.NewTask)},
        "multipart/form-data": {"schema": ref(schemas.NewUploadTask)},
    },
}


@route(
    "post",
    "/tasks",
    "Start a background task (`export_posts`; `import_posts` with an uploaded file, as "
    "multipart/form-data); it runs in the worker",
    {202: created_response("The queued task.", schemas.Task), 409: TASK_CONFLICT},
    tag="tasks",
    request_body=TASK_BODY,
)
def create_task() -> Response:
    """Start a background task; 202 with the task, or 409 with the one already active."""
    user = token_user()
    if request.mimetype == "multipart/form-data":
        task = start_upload_task(user)
        name = request.form["name"]
    else:
        name = validated(schemas.NewTask, json_object()).name
        if name not in tasks.USER_TASKS:
            known = ", ".join(sorted([*tasks.USER_TASKS, *UPLOAD_TASKS]))
            api_abort(
                400, _("Unknown task %(name)r; known tasks: %(known)s.", name=name, known=known)
            )
        task = tasks.USER_TASKS[name](user)
    return accepted(user, task, name)


def accepted(user: User, task: Task | None, name: str) -> Response:
    """202 with the task just started, or 409 with the `name` task already active (None)."""
    if task is None:
        active = Task.active_for(user.id, name)
        extra = {"task": task_out(active).dump()} if active else {}
        api_abort(409, _("A %(name)s task is already in progress.", name=name), **extra)
    return created(task_out(task).dump(), url_for("api.get_task", id=task.id), status=202)


def start_upload_task(user: User) -> Task | None:
    """Start the task named by the multipart form's `name` with its `file`."""
    name = request.form.get("name", "")
    if name not in UPLOAD_TASKS:
        known = ", ".join(sorted(UPLOAD_TASKS))
        api_abort(
            400,
            _(
                "Unknown task %(name)r for an uploaded file; known tasks: %(known)s.",
                name=name,
                known=known,
            ),
        )
    return UPLOAD_TASKS[name](user, uploaded_file())


def uploaded_file() -> FileStorage:
    """The multipart form's `file`; 400 without one."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        api_abort(400, _("Missing the uploaded file (form field 'file')."))
    return upload


@route(
    "get",
    "/tasks",
    "Your task history, newest first",
    {200: json_response("A page of tasks.", schemas.TaskCollection)},
    tag="tasks",
)
def get_tasks(query: schemas.Paging) -> dict:
    """The token user's task history, newest first."""
    select = task_history(token_user())
    return paginated(select, task_out, "api.get_tasks", query, schemas.TaskCollection)


@route(
    "get",
    "/tasks/<id>",
    "One of your tasks: status, progress, message and links",
    {200: json_response("The task.", schemas.Task), **errors(404)},
    tag="tasks",
)
def get_task(path: schemas.TaskId) -> dict[str, Any]:
    return task_out(own_task(path.id)).dump()


@route(
    "post",
    "/tasks/<id>/cancel",
    "Cancel a queued or running task",
    {
        200: json_response("The task, cancelled or cancelling.", schemas.Task),
        409: TASK_CONFLICT,
        **errors(404),
    },
    tag="tasks",
)
def cancel_task(path: schemas.TaskId) -> dict[str, Any]:
    """Cancel a queued task at once, or a running one at its next progress tick."""
    task = own_task(path.id)
    if task.cancel(tasks.huey) is None:
        db.session.refresh(task)
        message = _("The task is already %(status)s.", status=task.status)
        api_abort(409, message, task=task_out(task).dump())
    db.session.refresh(task)
    return task_out(task).dump()


@route(
    "get",
    "/tasks/<id>/download",
    "The export file of a finished task (`posts.json`)",
    {
        200: json_response("The export: the task owner's posts, oldest first.", schemas.Export),
        409: TASK_CONFLICT,
        **errors(404),
    },
    tag="tasks",
)
def download_task(path: schemas.TaskId) -> Response:
    """The export file (`posts.json`) of a finished task."""
    task = own_task(path.id)
    if task.is_active:
        api_abort(409, _("The task has not finished yet."), task=task_out(task).dump())
    download = send_export(task)
    if download is None:
        api_abort(404, _("This task has no download (it failed, was cancelled or expired)."))
    return download


# --- the contract ---------------------------------------------------------------------------


@route(
    "get",
    "/openapi.json",
    "This document",
    {200: json_response("The OpenAPI document.", {"type": "object"})},
    tag="meta",
    auth=None,
)
def openapi_document() -> dict:
    """The OpenAPI 3.1 description of everything under /api."""
    return document()
