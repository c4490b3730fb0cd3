"""Who is who between servers: the key pairs of our users and of the instance actor, what we
know of remote accounts (their actor document, inbox, key), follows waiting for an answer,
and the ids of deleted posts.

A remote account is a `User` row with a `domain` and a username of the form name@domain,
so follows, timelines and search treat it like any other; the rest of its actor data is a
`RemoteActor` row beside it. Local actor ids are stable (`/actors/<user id>`), so that a
renamed user stays the same actor for the servers that follow them.
"""

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app

import fedsign
import remote_content
from database import Model, _insert_unless_conflict, db, row_id, utcnow
from follows import Follows
from models import ABOUT_ME_MAX, URL_MAX, USERNAME_MAX, User, followers

# A remote account's actor document is fetched again when it is older than this.
ACTOR_STALE_AFTER = timedelta(days=1)
# What we accept as the name part of a remote handle (Mastodon allows less).
REMOTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
ACTOR_TYPES = {"Person", "Service", "Application", "Group", "Organization"}
NAME_MAX = 255


class ActorError(ValueError):
    """An actor document from another server is unusable (missing or wrong fields)."""


# --- tables ---------------------------------------------------------------------------


class LocalActorKey(Model):
    """A local user's key pair, made the first time they need one."""

    __tablename__ = "local_actor_key"
    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    private_pem: so.Mapped[str] = so.mapped_column(sa.Text)
    public_pem: so.Mapped[str] = so.mapped_column(sa.Text)


class InstanceActorKey(Model):
    """The key pair of the site itself (one row), which signs our fetches."""

    __tablename__ = "instance_actor_key"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    private_pem: so.Mapped[str] = so.mapped_column(sa.Text)
    public_pem: so.Mapped[str] = so.mapped_column(sa.Text)


class RemoteActor(Model):
    """The actor data of a remote account, 1:1 with its `User` row."""

    __tablename__ = "remote_actor"
    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    actor_url: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX), unique=True)
    inbox: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX))
    shared_inbox: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    outbox: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    followers_url: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    following_url: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    profile_url: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    key_id: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX), index=True)
    public_key_pem: so.Mapped[str] = so.mapped_column(sa.Text)
    icon_url: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    display_name: so.Mapped[str | None] = so.mapped_column(sa.String(NAME_MAX))
    summary_html: so.Mapped[str | None] = so.mapped_column(sa.Text)
    # The totals its server gives for its collections, shown on its profile here.
    followers_count: so.Mapped[int | None] = so.mapped_column()
    following_count: so.Mapped[int | None] = so.mapped_column()
    posts_count: so.Mapped[int | None] = so.mapped_column()
    fetched_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    user: so.Mapped[User] = so.relationship()

    def is_stale(self) -> bool:
        return utcnow() - self.fetched_at > ACTOR_STALE_AFTER

    def delivery_inbox(self) -> str:
        """Where to send this account's activities: the shared inbox of its server if any."""
        return self.shared_inbox or self.inbox


class FollowRequest(Model):
    """A follow of a remote account that its server has not accepted yet."""

    __tablename__ = "follow_request"
    follower_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    followed_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    activity_id: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX), unique=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class Tombstone(Model):
    """A deleted local post's id: it answers 410 with a Tombstone, not 404."""

    __tablename__ = "tombstone"
    ap_id: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX), primary_key=True)
    deleted_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


# --- our own actors ---------------------------------------------------------------------


def site_url() -> str:
    return str(current_app.config["SITE_URL"])


def site_host() -> str:
    """The host others know this site by, with its port when it has one."""
    return urlsplit(site_url()).netloc


def instance_actor_id() -> str:
    return f"{site_url()}/actor"


def local_actor_id(user_id: int) -> str:
    return f"{site_url()}/actors/{user_id}"


def actor_id(user: User) -> str:
    """The actor URL of a local or remote account."""
    if user.domain is None:
        return local_actor_id(user.id)
    remote = remote_actor(user)
    if remote is None:
        raise LookupError(f"no actor data for {user.username}")
    return remote.actor_url


def key_id(user_id: int | None) -> str:
    return (instance_actor_id() if user_id is None else local_actor_id(user_id)) + "#main-key"


def signing_key_for(user_id: int | None) -> tuple[str, str]:
    """(keyId URL, private PEM) of a local user, or of the instance actor for None."""
    if user_id is None:
        return key_id(None), instance_key().private_pem
    return key_id(user_id), local_key(user_id).private_pem


def local_key(user_id: int) -> LocalActorKey:
    """The user's key pair, made (and committed) the first time it is asked for."""
    key = db.session.get(LocalActorKey, user_id)
    if key is None:
        private_pem, public_pem = fedsign.new_key_pair()
        values = {"user_id": user_id, "private_pem": private_pem, "public_pem": public_pem}
        # Two processes may make one at once: the first insert wins, both read it.
        db.session.execute(_insert_unless_conflict(LocalActorKey, values))
        db.session.commit()
        key = db.session.get(LocalActorKey, user_id)
    assert key is not None
    return key


def instance_key() -> InstanceActorKey:
    key = db.session.get(InstanceActorKey, 1)
    if key is None:
        private_pem, public_pem = fedsign.new_key_pair()
        values = {"id": 1, "private_pem": private_pem, "public_pem": public_pem}
        db.session.execute(_insert_unless_conflict(InstanceActorKey, values))
        db.session.commit()
        key = db.session.get(InstanceActorKey, 1)
    assert key is not None
    return key


def local_user_for_actor(url: str) -> User | None:
    """The local user whose actor URL (or profile URL) `url` is, if any."""
    site = site_url()
    for prefix in (f"{site}/actors/", f"{site}/user/"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            if prefix.endswith("/actors/"):
                number = row_id(rest)
                user = db.session.get(User, number) if number else None
            else:
                user = User.by_username(rest)
            return user if user is not None and user.domain is None else None
    return None


# --- remote accounts --------------------------------------------------------------------


def remote_actor(user: User) -> RemoteActor | None:
    return db.session.get(RemoteActor, user.id)


def remote_by_actor_url(url: str) -> RemoteActor | None:
    return db.session.scalar(sa.select(RemoteActor).where(RemoteActor.actor_url == url))


def remote_by_key_id(key: str) -> RemoteActor | None:
    return db.session.scalar(sa.select(RemoteActor).where(RemoteActor.key_id == key))


def host_of(url: str) -> str:
    """The host of a URL with its port, lower-cased ("" when there is none)."""
    try:
        return urlsplit(url).netloc.rpartition("@")[2].lower()
    except ValueError:
        return ""


def _url(document: dict, name: str, host: str, *, required: bool = False) -> str | None:
    """`document[name]` if it is an http(s) URL on `host` (a server speaks for itself only)."""
    value = document.get(name)
    if isinstance(value, dict):  # some servers embed {"id": ..., "type": "OrderedCollection"}
        value = value.get("id")
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        if len(value) <= URL_MAX and host_of(value) == host:
            return value
    if required:
        raise ActorError(f"the actor's {name} is missing or not on its own server")
    return None


def _any_url(value: Any) -> str | None:
    """An http(s) URL from a link value (a string, or an object with `url`/`href`)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("url") or value.get("href")
        if isinstance(value, list | dict):
            return _any_url(value)
    if isinstance(value, str) and value.startswith(("https://", "http://")):
        return value if len(value) <= URL_MAX else None
    return None


def _public_key(document: dict, actor_url: str) -> tuple[str, str]:
    key = document.get("publicKey")
    if isinstance(key, list):
        key = key[0] if key else None
    if not isinstance(key, dict):
        raise ActorError("the actor has no public key")
    key_url, owner, pem = key.get("id"), key.get("owner"), key.get("publicKeyPem")
    if not isinstance(key_url, str) or not isinstance(pem, str) or len(pem) > 10_000:
        raise ActorError("the actor's public key is incomplete")
    if owner not in (None, actor_url) or host_of(key_url) != host_of(actor_url):
        raise ActorError("the actor's public key belongs to someone else")
    return key_url, pem


def remote_username(document: dict[str, Any], actor_url: str) -> str:
    """The name an actor goes by here: its `preferredUsername`, or, where it has none we can
    use (the property is optional in ActivityPub), the last part of its id's path, or else
    a name made from the id (the same for the same actor every time)."""
    for name in (document.get("preferredUsername"), urlsplit(actor_url).path.rsplit("/", 1)[-1]):
        if isinstance(name, str) and REMOTE_NAME.match(name):
            return name
    return "actor-" + hashlib.sha256(actor_url.encode()).hexdigest()[:12]


def store_remote_actor(document: dict, *, fetched_from: str | None = None) -> User:
    """Create or update the remote account an actor document describes; return its user.

    `fetched_from`: the URL it was read from, which must be on the host of its id (an
    answer from one server cannot define an account of another). The caller commits.
    """
    actor_url = document.get("id")
    if not isinstance(actor_url, str) or not actor_url.startswith(("https://", "http://")):
        raise ActorError("the actor has no id")
    host = host_of(actor_url)
    if fetched_from is not None and host_of(fetched_from) != host:
        raise ActorError("the actor's id is on another server than its document")
    if document.get("type") not in ACTOR_TYPES:
        raise ActorError("the document is not an actor")
    name = remote_username(document, actor_url)
    handle = f"{name}@{host}"
    if len(handle) > USERNAME_MAX:
        raise ActorError("the actor's username is missing or unusable here")
    if host == site_host():
        raise ActorError("the actor claims to be on this server")
    key_url, pem = _public_key(document, actor_url)
    fields = {
        "actor_url": actor_url,
        "inbox": _url(document, "inbox", host, required=True),
        "shared_inbox": _url(document.get("endpoints") or {}, "sharedInbox", host),
        "outbox": _url(document, "outbox", host),
        "followers_url": _url(document, "followers", host),
        "following_url": _url(document, "following", host),
        "profile_url": _any_url(document.get("url")),
        "key_id": key_url,
        "public_key_pem": pem,
        "icon_url": _any_url(document.get("icon")),
        "display_name": _text(document.get("name"), NAME_MAX),
        "summary_html": _html(document.get("summary")),
        "fetched_at": utcnow(),
    }
    return _save_remote(handle, host, fields)


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return remote_content.html_to_text(value)[:limit] or None


def _html(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return remote_content.clean_html(value[:100_000])


def _save_remote(handle: str, host: str, fields: dict[str, Any]) -> User:
    remote = remote_by_actor_url(fields["actor_url"])
    user = remote.user if remote is not None else User.by_username(handle)
    if user is None:
        user = User(username=handle, domain=host)
        db.session.add(user)
        db.session.flush()
    elif user.domain != host:
        raise ActorError("that name belongs to another account")
    user.username = handle
    summary = fields["summary_html"]
    user.about_me = remote_content.html_to_text(summary)[:ABOUT_ME_MAX] if summary else None
    remote = remote or db.session.get(RemoteActor, user.id)
    if remote is None:
        remote = RemoteActor(user_id=user.id, **fields)
        db.session.add(remote)
    else:
        for name, value in fields.items():
            setattr(remote, name, value)
    return user


def forget_remote_account(user: User) -> None:
    """Remove a remote account and everything of it here (the caller commits)."""
    if user.domain is not None:
        db.session.delete(user)


# --- follows across servers ------------------------------------------------------------


def follow_request(follower: User, followed: User) -> FollowRequest | None:
    return db.session.get(FollowRequest, (follower.id, followed.id))


def request_follow(follower: User, followed: User, activity_id: str) -> None:
    """Record a follow of a remote account until its server answers (the caller commits)."""
    if follow_request(follower, followed) is None and not Follows(follower).is_following(followed):
        db.session.add(
            FollowRequest(follower_id=follower.id, followed_id=followed.id, activity_id=activity_id)
        )


def follow_request_by_activity(activity_id: str) -> FollowRequest | None:
    return db.session.scalar(
        sa.select(FollowRequest).where(FollowRequest.activity_id == activity_id)
    )


def cancel_follow_request(follower: User, followed: User) -> str | None:
    """Drop a waiting follow; the id of its Follow activity, or None when there was none."""
    request = follow_request(follower, followed)
    if request is None:
        return None
    db.session.delete(request)
    return request.activity_id


def remote_follower_inboxes(user: User) -> list[str]:
    """One inbox per server that has followers of `user` (its shared inbox where offered)."""
    # Chosen and made distinct by the database: a user with 10,000 followers elsewhere has
    # a few hundred servers, and loading an object per follower cost the request that posts
    # tens of MiB that its process kept.
    inbox = sa.func.coalesce(RemoteActor.shared_inbox, RemoteActor.inbox)
    return list(
        db.session.scalars(
            sa.select(inbox)
            .join(followers, followers.c.follower_id == RemoteActor.user_id)
            .where(followers.c.followed_id == user.id)
            .distinct()
            .order_by(inbox)
        )
    )


def bury(ap_id: str) -> None:
    """Remember a deleted post's id (the caller commits)."""
    if db.session.get(Tombstone, ap_id) is None:
        db.session.add(Tombstone(ap_id=ap_id))


def tombstone(ap_id: str) -> Tombstone | None:
    return db.session.get(Tombstone, ap_id)
