"""The JSON API's answers: database rows as the response models of api_schemas.py, and
pages of a collection (`items`, `_meta`, `_links`, as in the tutorial)."""

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Response, g, jsonify, url_for

import api_schemas as schemas
from database import db, isoformat_utc
from follows import Follows
from jobs import Task
from models import Post, User

# --- pagination ------------------------------------------------------------------------


def paginated(
    select: sa.Select[Any],
    item: Callable[[Any], schemas.Out],
    endpoint: str,
    paging: schemas.Paging,
    collection: type[schemas.Collection],
    total: int | None = None,
    **url_args: Any,
) -> dict:
    """A collection page: `items`, `_meta` and `_links`.

    `total`, when given, is the item count, for queries whose own COUNT would be slow.
    """
    page, per_page = paging.page, paging.per_page
    pagination = db.paginate(
        select, page=page, per_page=per_page, error_out=False, count=total is None
    )
    if total is not None:
        pagination.total = total

    def link(number: int) -> str:
        return url_for(endpoint, page=number, per_page=per_page, **url_args)

    return collection(
        items=[item(row) for row in pagination.items],
        meta=schemas.PageMeta(
            page=page,
            per_page=per_page,
            total_pages=pagination.pages,
            total_items=pagination.total or 0,
        ),
        links=schemas.PageLinks(
            self=link(page),
            next=link(page + 1) if pagination.has_next else None,
            prev=link(page - 1) if pagination.has_prev else None,
        ),
    ).dump()


def created(payload: dict, location: str, status: int = 201) -> Response:
    """201 (or 202 for accepted background work) with `payload` and a `Location` header."""
    response = jsonify(payload)
    response.status_code = status
    response.headers["Location"] = location
    return response


# --- representations --------------------------------------------------------------------


def user_out(user: User, include_email: bool | None = None) -> schemas.User:
    """A user as the API shows it; the email only to its owner (the token's user)."""
    if include_email is None:
        include_email = "api_token" in g and g.api_token.user_id == user.id
    return schemas.User(
        id=user.id,
        username=user.username,
        about_me=user.about_me,
        last_seen=isoformat_utc(user.last_seen),
        post_count=user.posts_count(),
        follower_count=Follows(user).followers_count(),
        following_count=Follows(user).following_count(),
        links=schemas.UserLinks(
            self=url_for("api.get_user", id=user.id),
            followers=url_for("api.get_followers", id=user.id),
            following=url_for("api.get_following", id=user.id),
            posts=url_for("api.get_user_posts", id=user.id),
            avatar=user.avatar(128),
        ),
        **({"email": user.email} if include_email else {}),
    )


def post_out(post: Post) -> schemas.Post:
    return schemas.Post(
        id=post.id,
        body=post.body,
        timestamp=isoformat_utc(post.timestamp),
        language=post.known_language,
        author=schemas.Author(id=post.author.id, username=post.author.username),
        links=schemas.PostLinks(
            self=url_for("api.get_post", id=post.id),
            author=url_for("api.get_user", id=post.user_id),
        ),
    )


def task_out(task: Task) -> schemas.Task:
    """A task as the API shows it; `_links.download` only once the export is ready."""
    download = {"download": url_for("api.download_task", id=task.id)} if task.has_download else {}
    return schemas.Task(
        id=task.id,
        name=task.name,
        description=task.description,
        status=task.status,
        progress=task.progress,
        message=task.status_text,
        created_at=isoformat_utc(task.created_at),
        started_at=isoformat_utc(task.started_at),
        finished_at=isoformat_utc(task.finished_at),
        result_size=task.result_size if task.has_download else None,
        links=schemas.TaskLinks(
            self=url_for("api.get_task", id=task.id),
            cancel=url_for("api.cancel_task", id=task.id),
            **download,
        ),
    )
