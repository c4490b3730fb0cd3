"""The Mastodon client API, part four: the instance, the lists of features we do not
have (empty, never a 404 that crashes an app), our own export and import tasks, and the
OpenAPI document; `init_app` mounts all of it."""

import re
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, current_app, jsonify, request, url_for
from pydantic import BaseModel, Field

import exporting
import importing
import mastodon_inbox  # noqa: F401  (its routes are part of the blueprint)
import mastodon_statuses  # noqa: F401  (its routes too)
from database import db, isoformat_utc
from jobs import Task
from mastodon_api import IdPath, Params
from mastodon_contract import (
    bp,
    document,
    masto_abort,
    me,
    not_found,
    route,
    unprocessable,
    validation_error_response,
)
from mastodon_entities import Account, CustomEmoji, TaskEntity, absolute
from models import POST_MAX, Post, User, registration_open
from user_tasks import task_history

# What apps read to tell the server's features apart; Mastodon.py compares it to the
# version each of its methods needs. 4.3 is the API whose endpoints this file follows.
MASTODON_VERSION = "4.3.0 (compatible; Microblog 1.0)"
LANGUAGES = ["en", "es"]

# --- instance ------------------------------------------------------------------------------


def site_title() -> str:
    return "Microblog"


def counts() -> tuple[int, int]:
    users = db.session.scalar(sa.select(sa.func.count()).where(User.disabled.is_(False)))
    posts = db.session.scalar(sa.select(sa.func.count(Post.id)))
    return users or 0, posts or 0


class AnyObject(BaseModel):
    model_config = {"extra": "allow", "title": "Object"}


def statuses_configuration() -> dict[str, int]:
    return {
        "max_characters": POST_MAX,
        "max_media_attachments": 0,
        "characters_reserved_per_url": 0,
    }


def contact_email() -> str:
    admins = current_app.config.get("ADMINS") or []
    return admins[0] if admins else ""


@route(
    "get",
    "/v1/instance",
    "This server (Mastodon's v1 form)",
    AnyObject,
    tag="instance",
    public=True,
)
def instance_v1() -> dict:
    users, posts = counts()
    return {
        "uri": request.host,
        "title": site_title(),
        "short_description": "A small microblog.",
        "description": "A small microblog.",
        "email": contact_email(),
        "version": MASTODON_VERSION,
        "urls": {"streaming_api": ""},
        "stats": {"user_count": users, "status_count": posts, "domain_count": len(peers())},
        "thumbnail": None,
        "languages": LANGUAGES,
        "registrations": registration_open(),
        "approval_required": False,
        "invites_enabled": False,
        "configuration": {
            "accounts": {"max_featured_tags": 0},
            "statuses": statuses_configuration(),
            "media_attachments": {"supported_mime_types": [], "image_size_limit": 0},
            "polls": {"max_options": 0, "max_characters_per_option": 0},
        },
        "contact_account": None,
        "rules": [],
    }


@route(
    "get",
    "/v2/instance",
    "This server (Mastodon's v2 form)",
    AnyObject,
    tag="instance",
    public=True,
)
def instance_v2() -> dict:
    users, _posts = counts()
    return {
        "domain": request.host,
        "title": site_title(),
        "version": MASTODON_VERSION,
        "source_url": "https://github.com/miguelgrinberg/microblog",
        "description": "A small microblog.",
        "usage": {"users": {"active_month": users}},
        "thumbnail": {"url": absolute(url_for("static", filename="favicon.svg"))},
        "languages": LANGUAGES,
        "configuration": {
            "urls": {"streaming": ""},
            "accounts": {"max_featured_tags": 0, "max_pinned_statuses": 0},
            "statuses": statuses_configuration(),
            "media_attachments": {"supported_mime_types": [], "image_size_limit": 0},
            "polls": {"max_options": 0},
            "translation": {"enabled": False},
        },
        "registrations": {
            "enabled": registration_open(),
            "approval_required": False,
            "message": None,
        },
        "contact": {"email": contact_email(), "account": None},
        "rules": [],
        "api_versions": {"mastodon": 2},
    }


@route(
    "get",
    "/v1/custom_emojis",
    "Custom emojis: none",
    CustomEmoji,
    tag="instance",
    public=True,
    many=True,
)
def custom_emojis() -> Response:
    return jsonify([])


@route(
    "get",
    "/v1/instance/peers",
    "The servers of the remote accounts known here",
    {"type": "string"},
    tag="instance",
    public=True,
    many=True,
)
def instance_peers() -> Response:
    return jsonify(peers())


def peers() -> list[str]:
    query = sa.select(User.domain).where(User.domain.is_not(None)).distinct().order_by(User.domain)
    return [domain for domain in db.session.scalars(query) if domain]


# --- what we do not have: empty lists ---------------------------------------------------------

EMPTY_LISTS = {
    # path: (summary, scope)
    "/v1/filters": ("Keyword filters (v1): none", "read:filters"),
    "/v2/filters": ("Keyword filters: none", "read:filters"),
    "/v1/lists": ("Lists: none", "read:lists"),
    "/v1/follow_requests": ("Follow requests: none (accounts are not locked)", "read:follows"),
    "/v1/blocks": ("Blocked accounts: none", "read:blocks"),
    "/v1/mutes": ("Muted accounts: none", "read:mutes"),
    "/v1/domain_blocks": ("Blocked domains: none", "read:blocks"),
    "/v1/bookmarks": ("Bookmarks: none", "read:bookmarks"),
    "/v1/favourites": ("Favourites: none", "read:favourites"),
    "/v1/endorsements": ("Featured accounts: none", "read:accounts"),
    "/v1/featured_tags": ("Featured hashtags: none", "read:accounts"),
    "/v1/followed_tags": ("Followed hashtags: none", "read:follows"),
    "/v1/announcements": ("Announcements: none", "read"),
    "/v2/suggestions": ("Follow suggestions: none", "read"),
    "/v1/scheduled_statuses": ("Scheduled statuses: none", "read:statuses"),
    "/v1/notifications/requests": (
        "Notifications held back for review: none (nothing is held back)",
        "read:notifications",
    ),
    # Open to anyone, as on Mastodon (None: no token needed).
    "/v1/trends/tags": ("Trending hashtags: none", None),
    "/v1/trends/statuses": ("Trending statuses: none", None),
    "/v1/trends/links": ("Trending links: none", None),
    "/v1/directory": ("The profile directory: empty", None),
    "/v1/instance/rules": ("The server's rules: none written", None),
    "/v1/accounts/<row_id:id>/featured_tags": ("An account's featured hashtags: none", None),
    "/v1/accounts/<row_id:id>/lists": ("The lists an account is on: none", "read:lists"),
}


def _empty_list_view(path: str, summary: str, scope: str | None) -> None:
    def view(**_path: Any) -> Response:
        return jsonify([])

    view.__name__ = "empty" + re.sub(r"<[^>]*>", "id", path).replace("/", "_")
    view.__doc__ = "Always an empty list: apps ask for it, this site has no such thing yet."
    if "<" in path:
        view.__annotations__ = {"path": IdPath}
    declare = route(
        "get",
        path,
        summary,
        {"type": "object"},
        tag="empty",
        scope=scope,
        public=scope is None,
        many=True,
    )
    declare(view)


for _path, (_summary, _scope) in EMPTY_LISTS.items():
    _empty_list_view(_path, _summary, _scope)


@route(
    "get",
    "/v1/preferences",
    "Your posting and reading preferences (the defaults: there are no others here)",
    AnyObject,
    tag="accounts",
    scope="read:accounts",
)
def preferences() -> dict:
    user = me()
    return {
        "posting:default:visibility": "public",
        "posting:default:sensitive": False,
        "posting:default:language": user.language,
        "reading:expand:media": "default",
        "reading:expand:spoilers": False,
    }


# --- our own: export and import tasks --------------------------------------------------------


def task_entity(task: Task) -> dict:
    download = (
        absolute(url_for("mastodon.download_export", id=task.id)) if task.has_download else None
    )
    return TaskEntity(
        id=task.id,
        name=task.name,
        status=str(task.status),
        progress=task.progress,
        message=task.status_text,
        created_at=isoformat_utc(task.created_at),
        finished_at=isoformat_utc(task.finished_at),
        download_url=download,
    ).dump()


def started(task: Task | None, name: str) -> tuple[dict, int]:
    if task is None:
        masto_abort(409, f"A {name} task is already in progress")
    return task_entity(task), 202


class TaskPath(BaseModel):
    id: str = Field(max_length=64)


def own_task(id: str) -> Task:
    task = db.session.scalar(Task.owned_by(me().id, id))
    if task is None:
        not_found()
    return task


@route(
    "post",
    "/v1/microblog/exports",
    "Start exporting your posts (a background task; 409 while one runs)",
    TaskEntity,
    tag="microblog",
    scope="read:statuses",
    status=202,
    refusals=[409],
)
def start_export() -> tuple[dict, int]:
    return started(exporting.start_export(me()), "export_posts")


class ImportParams(Params):
    file: Any = Field(
        description="Our export (posts.json), a Mastodon archive (.zip) or its outbox.json."
    )


@route(
    "post",
    "/v1/microblog/imports",
    "Start importing an archive (multipart, field `file`; 409 while one runs)",
    TaskEntity,
    tag="microblog",
    scope="write:statuses",
    status=202,
    files=True,
    refusals=[409],
)
def start_import(params: ImportParams) -> tuple[dict, int]:
    if not hasattr(params.file, "save") or not params.file.filename:
        unprocessable("Validation failed: file must be an uploaded file")
    return started(importing.start_import(me(), params.file), "import_posts")


@route(
    "get",
    "/v1/microblog/tasks",
    "Your tasks, newest first",
    TaskEntity,
    tag="microblog",
    scope="read",
    many=True,
)
def list_tasks() -> Response:
    select = task_history(me()).limit(40)
    return jsonify([task_entity(task) for task in db.session.scalars(select)])


@route(
    "get",
    "/v1/microblog/tasks/<id>",
    "One of your tasks: its status and progress",
    TaskEntity,
    tag="microblog",
    scope="read",
)
def get_task(path: TaskPath) -> dict:
    return task_entity(own_task(path.id))


@route(
    "get",
    "/v1/microblog/tasks/<id>/download",
    "The export file of a finished export task",
    AnyObject,
    tag="microblog",
    scope="read:statuses",
)
def download_export(path: TaskPath) -> Response:
    task = own_task(path.id)
    download = None if task.is_active else exporting.send_export(task)
    if download is None:
        not_found()
    return download


@route(
    "get",
    "/v1/microblog/openapi.json",
    "This document",
    AnyObject,
    tag="microblog",
    public=True,
)
def openapi_document() -> dict:
    return document()


def init_app(app: Flask) -> None:
    """Mount the Mastodon client API (token auth, no CSRF) beside our own /api."""
    app.register_blueprint(bp)
    app.extensions["csrf"].exempt(bp)
    # flask-openapi3 asks the app (not the blueprint) how to answer a refused request.
    other = getattr(app, "validation_error_callback", None)

    def refused(error: Any) -> Any:
        if request.blueprint == bp.name or other is None:
            return validation_error_response(error)
        return other(error)

    app.validation_error_callback = refused  # type: ignore[attr-defined]


__all__ = ["Account", "init_app"]
