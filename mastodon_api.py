"""The Mastodon client API, part one: apps, accounts, statuses and timelines.

Each endpoint is declared once with `route(...)` (mastodon_contract.py): its scope, its
request models and its response entity (mastodon_entities.py). Views parse, call the
models, and show rows as entities.
"""

import io
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.datastructures import FileStorage

import avatars
import tasks
from api_schemas import Text
from database import MAX_ROW_ID, db
from formatting import MENTION
from forms import MessageForm, PostForm, filled, first_error
from mastodon_contract import (
    current_token,
    current_user_or_none,
    id_page,
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
    Application,
    Context,
    CredentialAccount,
    Relationship,
    Status,
    account,
    credential_account,
    message_status,
    relationship,
    status,
)
from mastodon_store import IdempotencyKey
from models import (
    ABOUT_ME_MAX,
    USERNAME_MAX,
    Message,
    Post,
    User,
    contains_pattern,
    followers,
)
from oauth_store import NAME_MAX, OOB_REDIRECT, URL_MAX, OAuthApp, scope_list, unknown_scopes

# --- request models -------------------------------------------------------------------


class Params(BaseModel):
    """A request body: apps send more fields than we use, and those are ignored."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)


class IdPath(BaseModel):
    # Larger numbers match no route (a 404): no row has them.
    id: int = Field(json_schema_extra={"minimum": 0, "maximum": MAX_ROW_ID})


class StatusPath(BaseModel):
    """A status id: a post's, or past MESSAGE_ID_BASE a private message's (so it is no
    row id, and no converter range)."""

    id: str = Field(max_length=40)


class PageQuery(BaseModel):
    max_id: str | None = Field(None, pattern=r"^[0-9]{1,18}$")
    since_id: str | None = Field(None, pattern=r"^[0-9]{1,18}$")
    min_id: str | None = Field(None, pattern=r"^[0-9]{1,18}$")
    limit: str | None = Field(None, pattern=r"^[0-9]{1,6}$")


class AppParams(Params):
    client_name: Text = Field(min_length=1, max_length=NAME_MAX)
    redirect_uris: Text | list[Text] = Field(
        description="One or more, space- or newline-separated; `urn:ietf:wg:oauth:2.0:oob` "
        "to be shown the code."
    )
    scopes: Text = Field("read", max_length=1000)
    website: Text | None = Field(None, max_length=URL_MAX)


class CredentialsParams(Params):
    display_name: Text | None = Field(None, description="Ignored: the name shown is the username.")
    note: Text | None = Field(None, description="About me.")
    avatar: Any = Field(None, description="A PNG, JPEG or WebP picture (multipart).")


class StatusParams(Params):
    status: Text | None = None
    media_ids: list[str] = Field([], description="Not supported: must be empty.")
    poll: Any = Field(None, description="Not supported.")
    visibility: Text | None = Field(
        None, description="`direct` sends a private message to the one account it mentions."
    )
    in_reply_to_id: str | int | None = None
    spoiler_text: Text | None = None
    sensitive: bool | str | None = None
    language: Text | None = None


class LookupQuery(BaseModel):
    acct: str = Field(max_length=300)


class AccountSearchQuery(PageQuery):
    q: str = Field(max_length=300)


class StatusesQuery(PageQuery):
    only_media: str | None = None
    pinned: str | None = None
    exclude_replies: str | None = None
    exclude_reblogs: str | None = None
    tagged: str | None = Field(None, max_length=100)


class PublicQuery(PageQuery):
    local: str | None = None
    remote: str | None = None
    only_media: str | None = None


class TagPath(BaseModel):
    hashtag: str = Field(max_length=100)


def truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "on", "yes")


def user_or_404(id: int) -> User:
    user = db.session.get(User, id)
    if user is None or user.disabled:
        not_found()
    return user


# --- apps -------------------------------------------------------------------------------


@route(
    "post",
    "/v1/apps",
    "Register an app (a client of OAuth 2)",
    Application,
    tag="apps",
    public=True,
)
def create_app(params: AppParams) -> dict:
    uris = params.redirect_uris
    redirect_uris = scope_list(" ".join(uris) if isinstance(uris, list) else uris)
    if not redirect_uris or any(not valid_redirect(uri) for uri in redirect_uris):
        unprocessable("Validation failed: Redirect URI must be an absolute URI.")
    if unknown_scopes(params.scopes):
        unprocessable("Validation failed: Scopes are not valid: " + params.scopes[:100])
    app, secret = OAuthApp.register(
        params.client_name, redirect_uris, params.scopes, params.website
    )
    db.session.commit()
    return application(app, secret)


def valid_redirect(uri: str) -> bool:
    """An absolute URI (an app's own scheme is fine) or the out-of-band marker."""
    scheme, _, rest = uri.partition(":")
    return uri == OOB_REDIRECT or (
        bool(scheme)
        and scheme.replace("+", "").replace(".", "").replace("-", "").isalnum()
        and bool(rest)
        and len(uri) <= URL_MAX
        and "#" not in uri
    )


def application(app: OAuthApp, secret: str | None = None) -> dict:
    credentials = {"client_id": app.client_id, "client_secret": secret} if secret else {}
    return Application(
        id=str(app.id),
        name=app.name,
        website=app.website,
        scopes=scope_list(app.scopes),
        redirect_uri="\n".join(app.redirect_uri_list),
        redirect_uris=app.redirect_uri_list,
        **credentials,
    ).model_dump(mode="json", exclude=None if secret else {"client_id", "client_secret"})


@route(
    "get",
    "/v1/apps/verify_credentials",
    "The app of this token",
    Application,
    tag="apps",
    user=False,
)
def verify_app() -> dict:
    token = current_token()
    assert token is not None
    return application(token.app)


# --- accounts -------------------------------------------------------------------------------


@route(
    "get",
    "/v1/accounts/verify_credentials",
    "The token's own account, with its source",
    CredentialAccount,
    tag="accounts",
    scope="read:accounts",
)
def verify_credentials() -> dict:
    return credential_account(me()).dump()


@route(
    "patch",
    "/v1/accounts/update_credentials",
    "Change your note (about me) and picture",
    CredentialAccount,
    tag="accounts",
    scope="write:accounts",
    files=True,
)
def update_credentials(params: CredentialsParams) -> dict:
    """The picture is made by the worker, as from the profile page: it shows once done."""
    user = me()
    if params.note is not None:
        if len(params.note) > ABOUT_ME_MAX:
            unprocessable(f"Validation failed: Note is too long (maximum is {ABOUT_ME_MAX})")
        user.update_profile(about_me=params.note)
    if params.avatar is not None:
        start_avatar(user, params.avatar)
    db.session.commit()
    return credential_account(user).dump()


def start_avatar(user: User, upload: Any) -> None:
    if not hasattr(upload, "read"):
        unprocessable("Validation failed: Avatar must be a file")
    data = upload.read()
    try:
        tasks.check_avatar(data)
    except avatars.AvatarTooLarge as error:
        masto_abort(413, error.shown())
    except avatars.AvatarError as error:
        unprocessable(f"Validation failed: Avatar {error.shown()}")
    if tasks.start_avatar(user, FileStorage(io.BytesIO(data))) is None:
        unprocessable("Validation failed: Avatar is already being processed")


@route(
    "get",
    "/v1/accounts/lookup",
    "An account by its handle",
    Account,
    tag="accounts",
    public=True,
)
def lookup_account(query: LookupQuery) -> dict:
    name = query.acct.removeprefix("@")
    host = request.host.split(":")[0]
    name = name.removesuffix("@" + request.host).removesuffix("@" + host)
    if len(name) > USERNAME_MAX or "@" in name:
        not_found()
    user = User.by_username(name)
    if user is None or user.disabled:
        not_found()
    return account(user).dump()


@route(
    "get",
    "/v1/accounts/search",
    "Accounts whose username contains the words",
    Account,
    tag="accounts",
    scope="read:accounts",
    many=True,
)
def search_accounts(query: AccountSearchQuery) -> list[dict]:
    return [account(user).dump() for user in find_accounts(query.q)]


def find_accounts(text: str, limit: int = 40) -> list[User]:
    name = text.strip().removeprefix("@").split("@")[0][:USERNAME_MAX]
    if not name:
        return []
    select = User.named_like(name).where(User.disabled.is_(False)).limit(limit)
    return list(db.session.scalars(select))


@route(
    "get",
    "/v1/accounts/relationships",
    "How the token's user and these accounts follow each other (`id[]=…`)",
    Relationship,
    tag="accounts",
    scope="read:follows",
    many=True,
)
def relationships() -> list[dict]:
    viewer = me()
    ids = request.args.getlist("id[]") + request.args.getlist("id")
    found = []
    for id in ids[:40]:
        if id.isdecimal() and id.isascii() and len(id) <= 18:
            other = db.session.get(User, int(id))
            if other is not None:
                found.append(relationship(viewer, other).dump())
    return found


@route("get", "/v1/accounts/<row_id:id>", "An account", Account, tag="accounts", public=True)
def get_account(path: IdPath) -> dict:
    return account(user_or_404(path.id)).dump()


@route(
    "get",
    "/v1/accounts/<row_id:id>/statuses",
    "An account's statuses, newest first",
    Status,
    tag="accounts",
    public=True,
    many=True,
    paging=True,
)
def account_statuses(path: IdPath, query: StatusesQuery) -> Response:
    user = user_or_404(path.id)
    select = sa.select(Post).where(Post.user_id == user.id).options(so.joinedload(Post.author))
    if truthy(query.only_media) or truthy(query.pinned):
        select = select.where(sa.false())  # no media, no pinned posts here
    if query.tagged:
        select = select.where(Post.body.ilike(contains_pattern("#" + query.tagged), escape="\\"))
    posts, link = id_page(select, Post.id)
    return paged([status(post).dump() for post in posts], link)


def follow_list(path: IdPath, column: Any, other: Any) -> Response:
    user = user_or_404(path.id)
    ids = sa.select(other).where(column == user.id)
    select = sa.select(User).where(User.id.in_(ids), User.disabled.is_(False))
    users, link = id_page(select, User.id, default=40)
    return paged([account(found).dump() for found in users], link)


@route(
    "get",
    "/v1/accounts/<row_id:id>/followers",
    "The accounts that follow this one",
    Account,
    tag="accounts",
    public=True,
    many=True,
    paging=True,
)
def account_followers(path: IdPath, query: PageQuery) -> Response:
    return follow_list(path, followers.c.followed_id, followers.c.follower_id)


@route(
    "get",
    "/v1/accounts/<row_id:id>/following",
    "The accounts this one follows",
    Account,
    tag="accounts",
    public=True,
    many=True,
    paging=True,
)
def account_following(path: IdPath, query: PageQuery) -> Response:
    return follow_list(path, followers.c.follower_id, followers.c.followed_id)


def change_follow(path: IdPath, follow: bool) -> dict:
    user = me()
    other = user_or_404(path.id)
    if other.id == user.id:
        masto_abort(403, "This action is not allowed")
    if follow:
        user.follow(other)
    else:
        user.unfollow(other)
    db.session.commit()
    return relationship(user, other).dump()


@route(
    "post",
    "/v1/accounts/<row_id:id>/follow",
    "Follow an account",
    Relationship,
    tag="accounts",
    scope="write:follows",
)
def follow_account(path: IdPath) -> dict:
    return change_follow(path, follow=True)


@route(
    "post",
    "/v1/accounts/<row_id:id>/unfollow",
    "Stop following an account",
    Relationship,
    tag="accounts",
    scope="write:follows",
)
def unfollow_account(path: IdPath) -> dict:
    return change_follow(path, follow=False)


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
    return status(post).dump()


def send_direct(user: User, text: str) -> dict:
    """A `direct` status is a private message to the account it mentions first."""
    match = MENTION.search(text)
    recipient = User.by_username(match.group(1).rstrip(".")) if match else None
    if recipient is None or recipient.id == user.id or recipient.disabled:
        unprocessable("Validation failed: A direct status must mention one other local account")
    form = filled(MessageForm, {"message": text})
    if form.errors:
        unprocessable(f"Validation failed: Text {first_error(form)}")
    message = user.send_message(recipient, form.message.data)
    db.session.commit()
    return message_status(message).dump()


def status_number(id: str) -> int:
    """A status id as a number, or 0 (no status) for anything that is none."""
    if not id.isdecimal() or not id.isascii() or len(id) > 18:
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
    authors = sa.union(user.followed_ids(), sa.select(sa.literal(user.id)))
    return posts_page(sa.select(Post).where(Post.user_id.in_(authors)))


@route(
    "get",
    "/v1/timelines/public",
    "Every post here, newest first (all are local; `remote=true` is empty)",
    Status,
    tag="timelines",
    public=True,
    many=True,
    paging=True,
)
def public_timeline(query: PublicQuery) -> Response:
    select = sa.select(Post)
    if truthy(query.remote) or truthy(query.only_media):
        select = select.where(sa.false())
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
