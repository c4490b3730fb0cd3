"""The Mastodon client API, part two: statuses (posts, and private messages as `direct`
ones) and timelines."""

from typing import Any, Literal

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Response, jsonify, request
from pydantic import BaseModel, Field

import federation_out
from api_schemas import Text
from database import MAX_ROW_ID, db
from follows import Follows
from formatting import MENTION
from forms import MessageForm, PostForm, filled, first_error
from mailboxes import Mailbox
from mastodon_api import PageQuery, Params, truthy
from mastodon_contract import (
    current_user_or_none,
    id_page,
    is_id,
    masto_abort,
    me,
    not_found,
    paged,
    route,
    unprocessable,
)
from mastodon_entities import (
    MESSAGE_ID_BASE,
    Account,
    Context,
    Status,
    message_status,
    status,
)
from mastodon_store import IdempotencyKey
from models import Message, Post, User, contains_pattern

# --- request models -------------------------------------------------------------------


class StatusPath(BaseModel):
    """A status id: a post's, or past MESSAGE_ID_BASE a private message's (so it is no
    row id, and no converter range)."""

    id: str = Field(max_length=40)


class StatusParams(Params):
    status: Text | None = None
    media_ids: list[str] = Field([], description="Not supported: must be empty.")
    poll: Any = Field(None, description="Not supported.")
    visibility: Literal["public", "unlisted", "private", "direct", ""] | None = Field(
        None,
        description="`direct` sends a private message to the one account it mentions; "
        "`private` (followers only) is refused: every post here is public.",
    )
    in_reply_to_id: str | int | None = None
    spoiler_text: Text | None = None
    sensitive: bool | str | None = None
    language: Text | None = None


class PublicQuery(PageQuery):
    local: str | None = None
    remote: str | None = None
    only_media: str | None = None


class TagPath(BaseModel):
    hashtag: str = Field(max_length=100)


# --- statuses ---------------------------------------------------------------------------------


@route(
    "post",
    "/v1/statuses",
    "Publish a status (or, with visibility `direct`, send a private message)",
    Status,
    tag="statuses",
    scope="write:statuses",
)
def create_status(params: StatusParams) -> dict:
    """With an `Idempotency-Key` header, a request repeated within an hour gives back the
    status the first one made."""
    user = me()
    if params.media_ids:
        unprocessable("Media attachments are not supported on this server yet")
    if params.poll:
        unprocessable("Polls are not supported on this server yet")
    if params.visibility == "direct":
        return send_direct(user, params.status or "")
    if params.visibility == "private":
        # Published, it would be public (and sent to other servers as public).
        unprocessable("Followers-only statuses are not supported on this server yet")
    key = (request.headers.get("Idempotency-Key") or "")[:200]
    earlier = IdempotencyKey.post_for(user, key) if key else None
    if earlier is not None:
        return status(earlier).dump()
    form = filled(PostForm, {"post": params.status or ""})
    if form.errors:
        unprocessable(f"Validation failed: Text {first_error(form)}")
    post = user.publish(form.post.data)
    if key:
        IdempotencyKey.remember(user, key, post)
    db.session.commit()
    federation_out.post_published(post)  # to the followers' servers, as from the page
    return status(post).dump()


def send_direct(user: User, text: str) -> dict:
    """A `direct` status is a private message to the account it mentions first."""
    match = MENTION.search(text)
    recipient = User.by_username(match.group(1).rstrip(".")) if match else None
    # Private messages stay on this server: a remote account cannot receive one yet.
    if recipient is None or recipient.id == user.id or recipient.disabled or recipient.domain:
        unprocessable("Validation failed: A direct status must mention one other local account")
    form = filled(MessageForm, {"message": text})
    if form.errors:
        unprocessable(f"Validation failed: Text {first_error(form)}")
    message = Mailbox(user).send(recipient, form.message.data)
    db.session.commit()
    return message_status(message).dump()


def status_number(id: str) -> int:
    """A status id as a number, or 0 (no status) for anything that is none."""
    if not is_id(id):
        return 0
    return int(id)


def visible_status(id: str) -> Post | Message:
    """The post, or a private message to or from the token's user; else 404."""
    number_id = status_number(id)
    if not 0 < number_id - MESSAGE_ID_BASE <= MAX_ROW_ID and not 0 < number_id <= MAX_ROW_ID:
        not_found()
    if number_id > MESSAGE_ID_BASE:
        viewer = current_user_or_none()
        message = db.session.get(Message, number_id - MESSAGE_ID_BASE)
        if (
            viewer is None
            or message is None
            or viewer.id
            not in (
                message.sender_id,
                message.recipient_id,
            )
        ):
            not_found()
        return message
    post = db.session.get(Post, number_id)
    if post is None or post.author.disabled:
        not_found()
    return post


def shown(row: Post | Message) -> dict:
    return (status(row) if isinstance(row, Post) else message_status(row)).dump()


@route("get", "/v1/statuses/<id>", "A status", Status, tag="statuses", public=True)
def get_status(path: StatusPath) -> dict:
    return shown(visible_status(path.id))


@route(
    "delete",
    "/v1/statuses/<id>",
    "Delete one of your statuses; the answer has its `text`, to edit and post again",
    Status,
    tag="statuses",
    scope="write:statuses",
)
def delete_status(path: StatusPath) -> dict:
    user = me()
    row = visible_status(path.id)
    if isinstance(row, Message) or row.user_id != user.id:
        not_found()
    shown_before = status(row).dump()
    user.delete_post(row.id)
    db.session.commit()
    federation_out.post_deleted(user, row.id)
    return shown_before


@route(
    "get",
    "/v1/statuses/<id>/context",
    "A status's thread: empty, as there are no replies here",
    Context,
    tag="statuses",
    public=True,
)
def status_context(path: StatusPath) -> dict:
    visible_status(path.id)
    return Context(ancestors=[], descendants=[]).dump()


def not_yet(path: StatusPath, what: str) -> Response:
    visible_status(path.id)
    return masto_abort(422, f"{what} are not supported on this server yet")


@route(
    "post",
    "/v1/statuses/<id>/favourite",
    "Favourites are not kept here: 422",
    Status,
    tag="statuses",
    scope="write:favourites",
)
def favourite(path: StatusPath) -> Response:
    return not_yet(path, "Favourites")


@route(
    "post",
    "/v1/statuses/<id>/unfavourite",
    "Favourites are not kept here: 422",
    Status,
    tag="statuses",
    scope="write:favourites",
)
def unfavourite(path: StatusPath) -> Response:
    return not_yet(path, "Favourites")


@route(
    "post",
    "/v1/statuses/<id>/reblog",
    "Boosts are not kept here: 422",
    Status,
    tag="statuses",
    scope="write:statuses",
)
def reblog(path: StatusPath) -> Response:
    return not_yet(path, "Boosts")


@route(
    "post",
    "/v1/statuses/<id>/unreblog",
    "Boosts are not kept here: 422",
    Status,
    tag="statuses",
    scope="write:statuses",
)
def unreblog(path: StatusPath) -> Response:
    return not_yet(path, "Boosts")


@route(
    "get",
    "/v1/statuses/<id>/favourited_by",
    "Who favourited a status: nobody, as favourites are not kept here",
    Account,
    tag="statuses",
    public=True,
    many=True,
)
def favourited_by(path: StatusPath) -> Response:
    visible_status(path.id)
    return jsonify([])


@route(
    "get",
    "/v1/statuses/<id>/reblogged_by",
    "Who boosted a status: nobody, as boosts are not kept here",
    Account,
    tag="statuses",
    public=True,
    many=True,
)
def reblogged_by(path: StatusPath) -> Response:
    visible_status(path.id)
    return jsonify([])


# --- timelines ------------------------------------------------------------------------------


def posts_page(select: sa.Select) -> Response:
    select = select.options(so.joinedload(Post.author)).where(
        Post.user_id.in_(sa.select(User.id).where(User.disabled.is_(False)))
    )
    posts, link = id_page(select, Post.id)
    return paged([status(post).dump() for post in posts], link)


@route(
    "get",
    "/v1/timelines/home",
    "Your posts and those of the accounts you follow, newest first",
    Status,
    tag="timelines",
    scope="read:statuses",
    many=True,
    paging=True,
)
def home_timeline(query: PageQuery) -> Response:
    user = me()
    authors = sa.union(Follows(user).followed_ids(), sa.select(sa.literal(user.id)))
    return posts_page(sa.select(Post).where(Post.user_id.in_(authors)))


@route(
    "get",
    "/v1/timelines/public",
    "Every post here, newest first (`local=true`: only ours; `remote=true`: only other servers')",
    Status,
    tag="timelines",
    public=True,
    many=True,
    paging=True,
)
def public_timeline(query: PublicQuery) -> Response:
    select = sa.select(Post)
    if truthy(query.local) or truthy(query.remote):
        remote = User.domain.is_not(None) if truthy(query.remote) else User.domain.is_(None)
        select = select.where(Post.user_id.in_(sa.select(User.id).where(remote)))
    if truthy(query.only_media):
        select = select.where(sa.false())  # no media here
    return posts_page(select)


@route(
    "get",
    "/v1/timelines/tag/<hashtag>",
    "Posts with this #hashtag, newest first",
    Status,
    tag="timelines",
    public=True,
    many=True,
    paging=True,
)
def tag_timeline(path: TagPath, query: PageQuery) -> Response:
    pattern = contains_pattern("#" + path.hashtag.lstrip("#"))
    return posts_page(sa.select(Post).where(Post.body.ilike(pattern, escape="\\")))
