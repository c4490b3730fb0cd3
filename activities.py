"""The ActivityPub documents this site serves and sends: actors, notes, collections and the
activities that carry them. Every id is an absolute URL built from SITE_URL."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app, has_request_context
from markupsafe import Markup

import actors
import mentions
from database import db
from follows import Follows
from formatting import linkify
from mailer import site_link
from models import Post, User, followers

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
# Public addressing as some servers write it (JSON-LD compaction).
PUBLIC_FORMS = {PUBLIC, "as:Public", "Public"}
COLLECTION_PAGE_SIZE = 20


def with_context(document: dict[str, Any]) -> dict[str, Any]:
    return {"@context": [AS_CONTEXT, SECURITY_CONTEXT], **document}


def iso(moment: datetime) -> str:
    """An ActivityPub timestamp: UTC, whole seconds, with a Z."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat() + "Z"


def absolute(path_or_url: str) -> str:
    """A URL from a path of this site (as url_for builds it)."""
    if "://" in path_or_url:
        return path_or_url
    site = urlsplit(actors.site_url())
    return f"{site.scheme}://{site.netloc}{path_or_url}"


@contextmanager
def site_urls() -> Iterator[None]:
    """url_for needs a request; in the worker, one to SITE_URL stands in for it."""
    if has_request_context():
        yield
        return
    with current_app.test_request_context(base_url=actors.site_url()):
        yield


def new_activity_id(kind: str) -> str:
    """A fresh id for an activity we send (unique; nothing needs to look it up here)."""
    return f"{actors.site_url()}/activities/{kind.lower()}/{uuid.uuid4()}"


# --- actors ---------------------------------------------------------------------------


def collection_urls(user: User) -> dict[str, str]:
    base = actors.local_actor_id(user.id)
    return {
        "inbox": f"{base}/inbox",
        "outbox": f"{base}/outbox",
        "followers": f"{base}/followers",
        "following": f"{base}/following",
    }


def person(user: User) -> dict[str, Any]:
    """A local user as an ActivityPub actor."""
    with site_urls():
        return _person(user)


def _person(user: User) -> dict[str, Any]:
    actor = actors.local_actor_id(user.id)
    document: dict[str, Any] = {
        "id": actor,
        "type": "Person",
        "preferredUsername": user.username,
        "name": user.username,
        "summary": note_html(user.about_me or ""),
        "url": site_link("people.user", username=user.username),
        **collection_urls(user),
        "endpoints": {"sharedInbox": f"{actors.site_url()}/inbox"},
        "manuallyApprovesFollowers": False,
        "discoverable": True,
        "icon": {"type": "Image", "url": absolute(user.avatar(256))},
        "publicKey": {
            "id": actors.key_id(user.id),
            "owner": actor,
            "publicKeyPem": actors.local_key(user.id).public_pem,
        },
    }
    if user.avatar_version:
        document["icon"]["mediaType"] = "image/webp"
    return with_context(document)


def instance_actor() -> dict[str, Any]:
    """The site itself, whose key signs our fetches."""
    actor = actors.instance_actor_id()
    return with_context(
        {
            "id": actor,
            "type": "Application",
            "preferredUsername": urlsplit(actors.site_url()).hostname,
            "name": "Microblog",
            "url": site_link("posts.index"),
            "inbox": f"{actors.site_url()}/inbox",
            "outbox": f"{actor}/outbox",
            "manuallyApprovesFollowers": True,
            "publicKey": {
                "id": actors.key_id(None),
                "owner": actor,
                "publicKeyPem": actors.instance_key().public_pem,
            },
        }
    )


# --- notes ----------------------------------------------------------------------------


def note_id(post: Post) -> str:
    return post.ap_id or site_link("posts.post", post_id=post.id)


def note_html(text: str) -> str:
    """A local post's text as the HTML other servers show: paragraphs, breaks and links."""
    with site_urls():
        paragraphs = [linkify(part) for part in text.split("\n\n") if part.strip()]
    html = "".join(
        str(Markup("<p>%s</p>") % Markup(str(part).replace("\n", "<br>"))) for part in paragraphs
    )
    # Mentions link to pages of this site: absolute, for readers elsewhere.
    return html.replace('href="/', f'href="{absolute("/")}')


def handle_of(user: User) -> str:
    """`@name@host`, as other servers write a mention of `user`."""
    return "@" + (user.username if user.domain else f"{user.username}@{actors.site_host()}")


def mention_tags(post: Post) -> tuple[list[dict[str, Any]], list[str]]:
    """The Mention tags of a local post, and the actor ids it mentions (for `cc`)."""
    tags, ids = [], []
    for account in mentions.mentioned(post):
        if account.domain is not None and actors.remote_actor(account) is None:
            continue
        ids.append(actors.actor_id(account))
        tags.append({"type": "Mention", "href": ids[-1], "name": handle_of(account)})
    return tags, ids


def audience(note: dict[str, Any]) -> set[str]:
    """Whom a note is addressed to: its `to` and `cc`."""
    found: set[str] = set()
    for field in ("to", "cc"):
        value = note.get(field)
        values = value if isinstance(value, list) else [value]
        found.update(v for v in values if isinstance(v, str))
    return found


def is_public_or_followers(note: dict[str, Any], actor: User) -> bool:
    """Whether a remote note is meant for timelines: public, or for the author's followers."""
    remote = actors.remote_actor(actor)
    addressed = audience(note)
    followers_url = remote.followers_url if remote is not None else None
    return bool(addressed & PUBLIC_FORMS) or (
        followers_url is not None and followers_url in addressed
    )


def note(post: Post) -> dict[str, Any]:
    """A local post as a public Note, addressed to everyone and copied to the followers."""
    author = post.author
    document: dict[str, Any] = {
        "id": note_id(post),
        "type": "Note",
        "attributedTo": actors.local_actor_id(author.id),
        "content": note_html(post.body),
        "url": note_id(post),
        "published": iso(post.timestamp),
        "to": [PUBLIC],
        "cc": [collection_urls(author)["followers"]],
    }
    tags, mentioned = mention_tags(post)
    if tags:  # mentioned accounts are addressed too, and their servers get the post
        document["tag"] = tags
        document["cc"] += mentioned
    if post.language:
        document["contentMap"] = {post.language: document["content"]}
    return document


def tombstone(ap_id: str, deleted: datetime) -> dict[str, Any]:
    return with_context({"id": ap_id, "type": "Tombstone", "deleted": iso(deleted)})


# --- activities -----------------------------------------------------------------------


def create(post: Post) -> dict[str, Any]:
    body = note(post)
    return with_context(
        {
            "id": f"{body['id']}/activity",
            "type": "Create",
            "actor": body["attributedTo"],
            "published": body["published"],
            "to": body["to"],
            "cc": body["cc"],
            "object": body,
        }
    )


def delete(actor_url: str, object_id: str, *, to: list[str]) -> dict[str, Any]:
    """The deletion of a post (a Tombstone) or of an actor (its id)."""
    target: Any = object_id if object_id == actor_url else {"id": object_id, "type": "Tombstone"}
    return with_context(
        {
            "id": new_activity_id("delete"),
            "type": "Delete",
            "actor": actor_url,
            "to": to,
            "object": target,
        }
    )


def update_person(user: User) -> dict[str, Any]:
    document = person(user)
    return with_context(
        {
            "id": new_activity_id("update"),
            "type": "Update",
            "actor": document["id"],
            "to": [PUBLIC],
            "cc": [document["followers"]],
            "object": {k: v for k, v in document.items() if k != "@context"},
        }
    )


def follow(follower: User, followed_actor: str) -> dict[str, Any]:
    return with_context(
        {
            "id": new_activity_id("follow"),
            "type": "Follow",
            "actor": actors.local_actor_id(follower.id),
            "object": followed_actor,
        }
    )


def undo(actor_url: str, activity: dict[str, Any]) -> dict[str, Any]:
    inner = {k: v for k, v in activity.items() if k != "@context"}
    return with_context(
        {"id": new_activity_id("undo"), "type": "Undo", "actor": actor_url, "object": inner}
    )


def answer(kind: str, actor_url: str, activity: dict[str, Any]) -> dict[str, Any]:
    """An Accept or Reject of `activity` (a Follow), by `actor_url`."""
    inner = {k: v for k, v in activity.items() if k != "@context"}
    return with_context(
        {"id": new_activity_id(kind), "type": kind, "actor": actor_url, "object": inner}
    )


# --- collections ----------------------------------------------------------------------


def ordered_collection(url: str, total: int) -> dict[str, Any]:
    return with_context(
        {"id": url, "type": "OrderedCollection", "totalItems": total, "first": f"{url}?page=1"}
    )


def collection_page(url: str, page: int, items: list[Any], total: int) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": f"{url}?page={page}",
        "type": "OrderedCollectionPage",
        "partOf": url,
        "totalItems": total,
        "orderedItems": items,
    }
    if page > 1:
        document["prev"] = f"{url}?page={page - 1}"
    if page * COLLECTION_PAGE_SIZE < total:
        document["next"] = f"{url}?page={page + 1}"
    return with_context(document)


def page_of(select: sa.Select, page: int) -> list[Any]:
    offset = (page - 1) * COLLECTION_PAGE_SIZE
    return list(db.session.scalars(select.limit(COLLECTION_PAGE_SIZE).offset(offset)))


def outbox(user: User, page: int | None) -> dict[str, Any]:
    url = collection_urls(user)["outbox"]
    total = user.posts_count()
    if page is None:
        return ordered_collection(url, total)
    items = [_inner(create(post)) for post in page_of(user.posts_select(), page)]
    return collection_page(url, page, items, total)


def _inner(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "@context"}


def people(user: User, relation: str, page: int | None) -> dict[str, Any]:
    """The followers or following collection of a local user: actor ids, newest name last."""
    url = collection_urls(user)[relation]
    mine, theirs = (
        (followers.c.followed_id, followers.c.follower_id)
        if relation == "followers"
        else (followers.c.follower_id, followers.c.followed_id)
    )
    graph = Follows(user)
    total = graph.followers_count() if relation == "followers" else graph.following_count()
    if page is None:
        return ordered_collection(url, total)
    select = (
        sa.select(User).join(followers, theirs == User.id).where(mine == user.id).order_by(User.id)
    )
    items = [actors.actor_id(person) for person in page_of(select, page)]
    return collection_page(url, page, items, total)
