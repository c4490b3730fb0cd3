"""The Mastodon client API, part one: apps and accounts, and the request models the
other parts share.

Each endpoint is declared once with `route(...)` (mastodon_contract.py): its scope, its
request models and its response entity (mastodon_entities.py). Views parse, call the
models, and show rows as entities.
"""

import io
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Response, request
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.datastructures import FileStorage

import avatars
import federation_out
import ratelimit
import tasks
from api_schemas import Text
from database import MAX_ROW_ID, db
from follows import Follows
from mastodon_contract import (
    current_token,
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
    Account,
    Application,
    CredentialAccount,
    FamiliarFollowers,
    Relationship,
    Status,
    account,
    credential_account,
    relationship,
    status,
)
from models import (
    ABOUT_ME_MAX,
    USERNAME_MAX,
    Post,
    User,
    contains_pattern,
    followers,
    users_named_like,
)
from oauth_store import NAME_MAX, OOB_REDIRECT, URL_MAX, OAuthApp, scope_list, unknown_scopes

# --- request models -------------------------------------------------------------------


class Params(BaseModel):
    """A request body: apps send more fields than we use, and those are ignored."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)


class IdPath(BaseModel):
    # Larger numbers match no route (a 404): no row has them.
    id: int = Field(json_schema_extra={"minimum": 0, "maximum": MAX_ROW_ID})


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
    refusals=[429],
)
def create_app(params: AppParams) -> dict:
    """Anyone may register an app (a few an hour from one address)."""
    retry_after = ratelimit.app_registration()
    if retry_after:
        masto_abort(
            429,
            ratelimit.refusal("app registrations", retry_after),
            {"Retry-After": str(retry_after)},
        )
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
    if params.note is not None:  # a new picture is announced by the worker once made
        federation_out.profile_updated(user)
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
    # Ours by name (with or without this host); a remote account known here by name@host.
    name = name.removesuffix("@" + request.host).removesuffix("@" + host)
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
    """Accounts whose name contains `text`; a handle known here (`name@host`) first."""
    handle = text.strip().removeprefix("@")
    known = User.by_username(handle) if "@" in handle else None
    if known is not None and not known.disabled:
        return [known]
    name = handle.split("@")[0][:USERNAME_MAX]
    if not name:
        return []
    select = users_named_like(name).where(User.disabled.is_(False)).limit(limit)
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
    return [relationship(viewer, other).dump() for other in accounts_asked_about()]


def accounts_asked_about() -> list[User]:
    """The accounts named by `id[]=…` (the first 40; ids that name nobody are left out)."""
    ids = request.args.getlist("id[]") + request.args.getlist("id")
    found = []
    for id in ids[:40]:
        if is_id(id):
            other = db.session.get(User, int(id))
            if other is not None:
                found.append(other)
    return found


FAMILIAR_MAX = 40  # accounts listed per account asked about


@route(
    "get",
    "/v1/accounts/familiar_followers",
    "Of each account asked about (`id[]=…`), the accounts you follow that follow it",
    FamiliarFollowers,
    tag="accounts",
    scope="read:follows",
    many=True,
)
def familiar_followers() -> list[dict]:
    viewer = me()
    return [
        FamiliarFollowers(id=str(other.id), accounts=familiar(viewer, other)).dump()
        for other in accounts_asked_about()
    ]


def familiar(viewer: User, other: User) -> list[Account]:
    """The accounts `viewer` follows that follow `other`, by name."""
    query = (
        sa.select(User)
        .join(followers, followers.c.follower_id == User.id)
        .where(followers.c.followed_id == other.id, User.disabled.is_(False))
        .where(User.id.in_(Follows(viewer).followed_ids()))
        .order_by(User.username)
        .limit(FAMILIAR_MAX)
    )
    return [account(user) for user in db.session.scalars(query)]


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
    federation_out.change_following(user, other, follow)
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


# Accounts here are never locked: every follow of them takes effect at once, so there is
# never a request to answer. Apps that offer the buttons get Mastodon's "not found".
FOLLOW_REQUEST_SUMMARY = (
    "Accept or refuse a follow request: none exist here (accounts are not locked)"
)


@route(
    "post",
    "/v1/follow_requests/<row_id:id>/authorize",
    FOLLOW_REQUEST_SUMMARY,
    Relationship,
    tag="accounts",
    scope="write:follows",
)
def authorize_follow_request(path: IdPath) -> dict:
    not_found()


@route(
    "post",
    "/v1/follow_requests/<row_id:id>/reject",
    FOLLOW_REQUEST_SUMMARY,
    Relationship,
    tag="accounts",
    scope="write:follows",
)
def reject_follow_request(path: IdPath) -> dict:
    not_found()
