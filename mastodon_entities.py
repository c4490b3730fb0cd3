"""Mastodon's JSON entities as pydantic models, and our rows shown as them: users as
Accounts, posts (and private messages, as `direct` ones) as Statuses, relationships,
notifications. Ids are strings and dates ISO 8601, as Mastodon writes them."""

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from flask import g, request, url_for
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field

import actors
from database import db, isoformat_utc
from follows import Follows
from formatting import MENTION, linkify
from models import Message, Post, User, followers

# Statuses are posts; a private message is a status too, with an id past any post's.
MESSAGE_ID_BASE = 10**15


class Entity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


Timestamp = str


class ProfileField(Entity):
    model_config = ConfigDict(extra="forbid", title="Field")
    name: str
    value: str
    verified_at: Timestamp | None = None


class CustomEmoji(Entity):
    shortcode: str
    url: str
    static_url: str
    visible_in_picker: bool


class Account(Entity):
    id: str
    username: str
    acct: str
    display_name: str
    locked: bool = False
    bot: bool = False
    discoverable: bool = True
    group: bool = False
    created_at: Timestamp
    note: str
    url: str
    uri: str
    avatar: str
    avatar_static: str
    header: str
    header_static: str
    followers_count: int
    following_count: int
    statuses_count: int
    last_status_at: str | None
    emojis: list[CustomEmoji] = []
    fields: list[ProfileField] = []


class Source(Entity):
    privacy: str = "public"
    sensitive: bool = False
    language: str = ""
    note: str
    fields: list[ProfileField] = []
    follow_requests_count: int = 0


class CredentialAccount(Account):
    source: Source


class Mention(Entity):
    id: str
    username: str
    url: str
    acct: str


class Tag(Entity):
    name: str
    url: str


class Status(Entity):
    id: str
    uri: str
    url: str | None
    created_at: Timestamp
    edited_at: Timestamp | None = None
    account: Account
    content: str
    text: str | None = None
    visibility: Literal["public", "unlisted", "private", "direct"]
    sensitive: bool = False
    spoiler_text: str = ""
    media_attachments: list[dict] = []
    application: dict | None = None
    mentions: list[Mention] = []
    tags: list[Tag] = []
    emojis: list[CustomEmoji] = []
    reblogs_count: int = 0
    favourites_count: int = 0
    replies_count: int = 0
    in_reply_to_id: str | None = None
    in_reply_to_account_id: str | None = None
    reblog: None = None
    poll: None = None
    card: None = None
    language: str | None
    favourited: bool = False
    reblogged: bool = False
    muted: bool = False
    bookmarked: bool = False
    pinned: bool = False
    filtered: list[dict] = []


class Context(Entity):
    ancestors: list[Status]
    descendants: list[Status]


class Relationship(Entity):
    id: str
    following: bool
    showing_reblogs: bool
    notifying: bool = False
    languages: list[str] | None = None
    followed_by: bool
    blocking: bool = False
    blocked_by: bool = False
    muting: bool = False
    muting_notifications: bool = False
    requested: bool = False
    requested_by: bool = False
    domain_blocking: bool = False
    endorsed: bool = False
    note: str = ""


class Notification(Entity):
    id: str
    type: Literal["follow", "mention"]
    created_at: Timestamp
    account: Account
    status: Status | None = None


class PolicySummary(Entity):
    pending_requests_count: int = 0
    pending_notifications_count: int = 0


class NotificationPolicyV1(Entity):
    """Which notifications are held back (v1 wording): none are here."""

    filter_not_following: bool = False
    filter_not_followers: bool = False
    filter_new_accounts: bool = False
    filter_private_mentions: bool = False
    summary: PolicySummary = PolicySummary()


class NotificationPolicy(Entity):
    """What happens to notifications from each kind of account: all are accepted here."""

    for_not_following: Literal["accept"] = "accept"
    for_not_followers: Literal["accept"] = "accept"
    for_new_accounts: Literal["accept"] = "accept"
    for_private_mentions: Literal["accept"] = "accept"
    for_limited_accounts: Literal["accept"] = "accept"
    summary: PolicySummary = PolicySummary()


class Conversation(Entity):
    id: str
    unread: bool
    accounts: list[Account]
    last_status: Status | None


class Marker(Entity):
    last_read_id: str
    version: int
    updated_at: Timestamp


class SearchResults(Entity):
    accounts: list[Account]
    statuses: list[Status]
    hashtags: list[Tag]


class Application(Entity):
    id: str
    name: str
    website: str | None
    scopes: list[str]
    redirect_uri: str
    redirect_uris: list[str]
    vapid_key: str = ""
    client_id: str | None = None
    client_secret: str | None = None


class EmptyObject(Entity):
    pass


class FamiliarFollowers(Entity):
    """Of one account asked about: the accounts you follow that follow it."""

    id: str
    accounts: list[Account]


class TaskEntity(Entity):
    """A background task of ours (export, import), with its progress."""

    model_config = ConfigDict(extra="forbid", title="MicroblogTask")
    id: str
    name: str
    status: str
    progress: int = Field(ge=0, le=100)
    message: str | None
    created_at: Timestamp
    finished_at: Timestamp | None
    download_url: str | None = Field(description="The export file, once it is ready.")


# --- rows as entities -----------------------------------------------------------------------


def absolute(path: str) -> str:
    """A path of this site as a whole URL (Mastodon's entities carry whole URLs)."""
    if path.startswith(("http://", "https://")):
        return path
    return request.host_url.rstrip("/") + path


def acct(user: User) -> str:
    """The account's handle: the username here; `name@host` for a remote account (whose
    username is stored that way)."""
    return user.username if user.domain is None else f"{user.username.split('@')[0]}@{user.domain}"


def _account_counts(user: User) -> tuple[int, int, int, datetime | None]:
    """Followers, following, posts and the last post's time: once per user and request."""
    cache: dict[int, Any] = g.setdefault("masto_counts", {})
    if user.id not in cache:
        last, count = db.session.execute(
            sa.select(sa.func.max(Post.timestamp), sa.func.count()).where(Post.user_id == user.id)
        ).one()
        graph = Follows(user)
        cache[user.id] = (graph.followers_count(), graph.following_count(), count, last)
    return cache[user.id]


def note_html(text: str | None) -> str:
    return str(Markup("<p>%s</p>") % linkify(text or "")) if text else ""


def account(user: User) -> Account:
    followers_count, following_count, statuses, last = _account_counts(user)
    page = absolute(url_for("people.user", username=user.username))
    avatar = absolute(user.avatar(128))
    header = absolute(url_for("static", filename="favicon.svg"))
    shown = Account(
        id=str(user.id),
        username=user.username,
        acct=acct(user),
        display_name=user.username,
        created_at=isoformat_utc(user.created_at),
        note=note_html(user.about_me),
        url=page,
        uri=page,
        avatar=avatar,
        avatar_static=avatar,
        header=header,
        header_static=header,
        followers_count=followers_count,
        following_count=following_count,
        statuses_count=statuses,
        last_status_at=last.date().isoformat() if last else None,
    )
    return with_remote_profile(shown, user) if user.domain is not None else shown


def with_remote_profile(shown: Account, user: User) -> Account:
    """A remote account as its server describes it: its name there, its profile (HTML
    cleaned when it was fetched), its addresses and its server's counts."""
    remote = actors.remote_actor(user)
    shown.username = user.username.split("@")[0]
    if remote is None:
        return shown
    shown.display_name = remote.display_name or shown.username
    shown.note = remote.summary_html or ""
    shown.uri = remote.actor_url
    shown.url = remote.profile_url or remote.actor_url
    shown.followers_count = remote.followers_count or 0
    shown.following_count = remote.following_count or 0
    shown.statuses_count = remote.posts_count or shown.statuses_count
    return shown


def credential_account(user: User) -> CredentialAccount:
    return CredentialAccount(
        **account(user).model_dump(),
        source=Source(note=user.about_me or "", language=user.language or ""),
    )


def content_html(text: str) -> str:
    lines = [linkify(line) for line in text.split("\n")]
    return str(Markup("<p>%s</p>") % Markup("<br>").join(lines))


def mentions(text: str) -> list[Mention]:
    names = {match.group(1).rstrip(".").lower() for match in MENTION.finditer(text)}
    if not names:
        return []
    users = db.session.scalars(sa.select(User).where(sa.func.lower(User.username).in_(names)))
    return [
        Mention(
            id=str(user.id),
            username=user.username,
            acct=acct(user),
            url=absolute(url_for("people.user", username=user.username)),
        )
        for user in users
    ]


def status(post: Post) -> Status:
    """A post as a status; one from another server keeps its id there, its page and its
    content (sanitised when it arrived)."""
    url = absolute(url_for("posts.post", post_id=post.id))
    return Status(
        id=str(post.id),
        uri=post.ap_id or url,
        url=post.url or post.ap_id or url,
        created_at=isoformat_utc(post.timestamp),
        account=account(post.author),
        content=post.html if post.html is not None else content_html(post.body),
        text=post.body,
        visibility="public",
        mentions=mentions(post.body),
        language=post.known_language,
    )


def message_status(message: Message) -> Status:
    """A private message as a `direct` status, mentioning its recipient."""
    recipient = message.recipient
    mention = f"@{recipient.username} "
    body = message.body if message.body.startswith(mention.strip()) else mention + message.body
    return Status(
        id=str(MESSAGE_ID_BASE + message.id),
        uri=absolute(url_for("messages.messages")) + f"#message-{message.id}",
        url=None,
        created_at=isoformat_utc(message.timestamp),
        account=account(message.author),
        content=content_html(body),
        text=message.body,
        visibility="direct",
        mentions=[
            Mention(
                id=str(recipient.id),
                username=recipient.username,
                acct=acct(recipient),
                url=absolute(url_for("people.user", username=recipient.username)),
            )
        ],
        language=None,
    )


def relationship(viewer: User, other: User) -> Relationship:
    def follows(a: int, b: int) -> bool:
        query = sa.select(followers.c.follower_id).where(
            followers.c.follower_id == a, followers.c.followed_id == b
        )
        return db.session.scalar(query) is not None

    following = follows(viewer.id, other.id)
    return Relationship(
        id=str(other.id),
        following=following,
        showing_reblogs=following,
        followed_by=follows(other.id, viewer.id),
        # A follow of a remote account waits for its server's Accept.
        requested=actors.follow_request(viewer, other) is not None,
    )
