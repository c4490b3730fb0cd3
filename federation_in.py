"""What other servers send: every inbox POST is verified before anything is done (the inbox
and its queue are inbound.py), and each stored activity is applied by the worker (`apply`, a
dispatch table by type).

Verification: the request's HTTP Signature must verify with the key of the activity's actor
(fetched, signed, when unknown; fetched again once when a cached key fails, for rotation),
its body must match the signed digest and its date be recent. Anything else gets a 4xx and
changes nothing. Moderation (blocked domains) is asked before any key is fetched.
"""

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import abort

import activities
import actors
import blocks
import federation_out
import federation_social
import fedfetch
import fedsign
import known_keys
import remote_content
from database import Model, db, utcnow
from follows import Follows
from models import POST_MAX, URL_MAX, Post, User, followers
from worker import app_context, huey

log = logging.getLogger("huey.microblog")

# Deeper JSON than any activity needs is refused before anything walks it.
MAX_JSON_DEPTH = 24
# The longest remote post content kept.
CONTENT_MAX = 100_000
NOTE_TYPES = {"Note", "Article", "Page", "Question"}


class InboxActivity(Model):
    """An activity another server posted to us, kept once by its id."""

    __tablename__ = "inbox_activities"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    activity_id: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX), unique=True)
    actor_url: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX))
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    # received → applied, or → failed (with the reason in `error`).
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="received", index=True)
    error: so.Mapped[str | None] = so.mapped_column(sa.Text)
    received_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, index=True)
    # A received row is taken by a worker until then (or, after an error, waits until then).
    claimed_until: so.Mapped[datetime | None] = so.mapped_column()


# --- receiving --------------------------------------------------------------------------


def key_id_of(headers: dict[str, str]) -> str:
    """The keyId a request claims, read before verifying (to refuse blocked servers)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if "signature-input" in lowered:
        marker = 'keyid="'
        start = lowered["signature-input"].find(marker)
        if start < 0:
            return ""
        rest = lowered["signature-input"][start + len(marker) :]
        return rest.split('"', 1)[0]
    value = lowered.get("signature") or lowered.get("authorization", "").partition(" ")[2]
    try:
        return fedsign.parse_signature_header(value).get("keyid", "")
    except fedsign.SignatureError:
        return ""


def verified_key_owner(
    method: str, target: str, headers: dict[str, str], body: bytes | None
) -> str:
    """The URL of the remote actor whose key signed the request (to this site: a request
    signed for another server's host is not ours to take). Raises SignatureError or
    FetchError."""
    host = next((value for name, value in headers.items() if name.lower() == "host"), "")
    if host.lower() != actors.site_host().lower():
        raise fedsign.SignatureError("the request is not addressed to this site")
    scheme = actors.site_url().partition("://")[0]
    keys = known_keys.known_keys()
    claimed = key_id_of(headers)
    known = keys.get(claimed) if claimed else None
    if known is not None:
        try:
            fedsign.verify_request(
                method, target, headers, body, {claimed: known.pem}.get, scheme=scheme
            )
            return known.actor_url
        except fedsign.KeyMismatch:
            keys.drop(claimed)  # rotated, perhaps: read it again below
    key_id = _verified_with_stored_key(method, target, headers, body, scheme)
    owner = actors.remote_by_key_id(key_id)
    if owner is None:
        raise fedsign.SignatureError("the signing key belongs to no known actor")
    keys.put(key_id, owner.public_key_pem, owner.actor_url)
    return owner.actor_url


def _verified_with_stored_key(
    method: str, target: str, headers: dict[str, str], body: bytes | None, scheme: str
) -> str:
    """The key id that signed the request, verified with the key in the database (fetched
    when unknown, and fetched again once when it fails: it may have been rotated)."""
    fetched: set[str] = set()

    def cached_or_fetched(key_id: str) -> str | None:
        remote = actors.remote_by_key_id(key_id)
        if remote is None:
            fetched.add(key_id)
            remote = fetch_key_owner(key_id)
        return remote.public_key_pem if remote is not None else None

    def refetched(key_id: str) -> str | None:
        remote = fetch_key_owner(key_id)
        return remote.public_key_pem if remote is not None else None

    try:
        return fedsign.verify_request(
            method, target, headers, body, cached_or_fetched, scheme=scheme
        )
    except fedsign.KeyMismatch as mismatch:
        claimed = key_id_of(headers)
        if not claimed or claimed in fetched:
            raise mismatch from None
        # The key may have been rotated since we stored it: fetch it once more.
        return fedsign.verify_request(method, target, headers, body, refetched, scheme=scheme)


def fetch_key_owner(key_id: str) -> actors.RemoteActor | None:
    """Fetch the actor a key id belongs to and store it; None when the key is not its."""
    if not key_id.startswith(("https://", "http://")):
        return None
    url = key_id.partition("#")[0]
    document = fedfetch.fetch_json(url)
    owner = document.get("owner")
    if document.get("type") not in actors.ACTOR_TYPES and isinstance(owner, str):
        if actors.host_of(owner) != actors.host_of(url):
            return None
        url, document = owner, fedfetch.fetch_json(owner)
    remote = actors.remote_actor(fedfetch.store_actor(document, url))
    return remote if remote is not None and remote.key_id == key_id else None


def parse_activity(body: bytes) -> dict[str, Any]:
    """The activity in a body, or 400: a JSON object, not too deep, with an id, a type and
    an actor."""
    try:
        activity = json.loads(body)
    except (ValueError, RecursionError):
        abort(400, "the body is not JSON")
    if not isinstance(activity, dict) or _depth(activity) > MAX_JSON_DEPTH:
        abort(400, "the body is not an activity")
    try:  # "\ud800" escapes make lone surrogates, which no database column takes
        json.dumps(activity, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        abort(400, "the body holds text that is not Unicode")
    for name in ("id", "type"):
        if not isinstance(activity.get(name), str) or len(activity[name]) > URL_MAX:
            abort(400, f"the activity has no usable {name}")
    if not isinstance(object_id(activity.get("actor")), str):
        abort(400, "the activity has no actor")
    return activity


def _depth(document: Any) -> int:
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict | list):
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_actor(activity: dict[str, Any], signer_url: str) -> None:
    """The signer must be the activity's actor, and the activity's id on its server."""
    actor_url = object_id(activity["actor"])
    if actor_url != signer_url:
        abort(401, "the key is not the actor's")
    if actors.host_of(activity["id"]) != actors.host_of(actor_url):
        abort(400, "the activity's id is on another server than its actor")
    if activity.get("type") in AUTHORED_TYPES:
        _check_authorship(activity.get("object"), actor_url)


# Activities whose object must be the actor's own: one cannot create, change or delete
# what is another's (an Announce or a Like names others' objects, and that is their point).
AUTHORED_TYPES = {"Create", "Update", "Delete"}


def _check_authorship(item: Any, actor_url: str) -> None:
    """The object of a Create, Update or Delete lives on the actor's server and, where it
    names its author, is the actor's."""
    item_id = object_id(item)
    if item_id is not None and actors.host_of(item_id) != actors.host_of(actor_url):
        abort(400, "the object is on another server than its actor")
    author = item.get("attributedTo") if isinstance(item, dict) else None
    authors = author if isinstance(author, list) else [author]
    if author is not None and actor_url not in (object_id(one) for one in authors):
        abort(400, "the object is attributed to another actor")


def object_id(value: Any) -> str | None:
    """The id of an object given as its URL or embedded with an `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and len(value) <= URL_MAX else None


# --- applying ---------------------------------------------------------------------------

Handler = Callable[[dict[str, Any], User], None]
# Called for each Note another server creates, with the post stored for it (None when it
# went into no timeline, e.g. a direct message): mentions and messages hook in here.
NoteListener = Callable[[dict[str, Any], User, Post | None], None]
NOTE_LISTENERS: list[NoteListener] = [federation_social.on_note]


def apply(activity: dict[str, Any], actor: User) -> None:
    """Apply one verified activity of `actor` (idempotent; the caller commits)."""
    handler = HANDLERS.get(str(activity.get("type")))
    if handler is not None:
        handler(activity, actor)


def local_target(activity: dict[str, Any]) -> User | None:
    url = object_id(activity.get("object"))
    return actors.local_user_for_actor(url) if url else None


def on_follow(activity: dict[str, Any], actor: User) -> None:
    """Follows of local users are accepted at once (no locked accounts here)."""
    followed = local_target(activity)
    remote = actors.remote_actor(actor)
    if followed is None or remote is None or not followed.is_active:
        return
    if blocks.hidden_from(followed, actor):  # a blocked account (or domain) may not follow
        reject = activities.answer("Reject", actors.local_actor_id(followed.id), activity)
        federation_out.send(reject, followed.id, [remote.inbox])
        return
    Follows(actor).follow(followed)
    accept = activities.answer("Accept", actors.local_actor_id(followed.id), activity)
    db.session.commit()
    federation_out.send(accept, followed.id, [remote.inbox])


def _answered_request(activity: dict[str, Any], actor: User) -> actors.FollowRequest | None:
    """The follow request of ours that an Accept or Reject from `actor` answers."""
    inner = activity.get("object")
    request_row = actors.follow_request_by_activity(object_id(inner) or "")
    if request_row is None and isinstance(inner, dict) and inner.get("type") == "Follow":
        follower = actors.local_user_for_actor(object_id(inner.get("actor")) or "")
        if follower is not None:
            request_row = actors.follow_request(follower, actor)
    if request_row is None or request_row.followed_id != actor.id:
        return None
    return request_row


def on_accept(activity: dict[str, Any], actor: User) -> None:
    request_row = _answered_request(activity, actor)
    if request_row is not None:
        follower = db.session.get_one(User, request_row.follower_id)
        db.session.delete(request_row)
        Follows(follower).follow(actor)


def on_reject(activity: dict[str, Any], actor: User) -> None:
    request_row = _answered_request(activity, actor)
    if request_row is not None:
        db.session.delete(request_row)
        return
    inner = activity.get("object")
    if isinstance(inner, dict):  # a follow they accepted before and now end
        follower = actors.local_user_for_actor(object_id(inner.get("actor")) or "")
        if follower is not None:
            Follows(follower).unfollow(actor)


def on_undo(activity: dict[str, Any], actor: User) -> None:
    inner = activity.get("object")
    if isinstance(inner, str):  # only its id: the activity as it came to us
        stored = db.session.scalar(
            sa.select(InboxActivity).where(InboxActivity.activity_id == inner)
        )
        inner = json.loads(stored.body) if stored is not None else None
    if not isinstance(inner, dict) or object_id(inner.get("actor")) != actors.actor_id(actor):
        return
    handler = UNDO_HANDLERS.get(str(inner.get("type")))
    if handler is not None:
        handler(inner, actor)


def undo_follow(follow: dict[str, Any], actor: User) -> None:
    followed = local_target(follow)
    if followed is not None:
        Follows(actor).unfollow(followed)


def _own_note(activity: dict[str, Any], actor: User) -> dict[str, Any] | None:
    """The embedded Note of an activity, if it is by `actor` and has an id on its server."""
    note = activity.get("object")
    if not isinstance(note, dict) or note.get("type") not in NOTE_TYPES:
        return None
    note_id, author = object_id(note), object_id(note.get("attributedTo"))
    actor_url = actors.actor_id(actor)
    if note_id is None or author != actor_url:
        return None
    if actors.host_of(note_id) != actors.host_of(actor_url):
        return None
    return note


def on_create(activity: dict[str, Any], actor: User) -> None:
    note = _own_note(activity, actor)
    if note is None:
        return
    post = None
    meant_here = _has_local_followers(actor) or federation_social.mentions_someone_here(note)
    if activities.is_public_or_followers(note, actor) and meant_here:
        post = store_remote_post(note, actor)
    for listener in NOTE_LISTENERS:
        listener(note, actor, post)


# Built once: asked for every note that arrives, and building it cost more than running it.
LOCAL_FOLLOWER_OF = (
    sa.select(followers.c.follower_id)
    .join(User, User.id == followers.c.follower_id)
    .where(followers.c.followed_id == sa.bindparam("actor_id"), User.domain.is_(None))
    .limit(1)
)


def _has_local_followers(actor: User) -> bool:
    return db.session.scalar(LOCAL_FOLLOWER_OF, {"actor_id": actor.id}) is not None


def store_remote_post(note: dict[str, Any], actor: User) -> Post:
    """The post for a remote Note, added if new (the caller commits)."""
    existing = db.session.scalar(sa.select(Post).where(Post.ap_id == note["id"]))
    if existing is not None:
        return existing
    post = Post(user_id=actor.id, ap_id=note["id"], timestamp=_published(note))
    post.url = actors._any_url(note.get("url")) or note["id"]
    _set_content(post, note)
    db.session.add(post)
    db.session.flush()
    return post


def _set_content(post: Post, note: dict[str, Any]) -> None:
    content = note.get("content")
    html = remote_content.clean_html(content[:CONTENT_MAX]) if isinstance(content, str) else ""
    text = remote_content.html_to_text(html) or "…"
    post.html = html
    post.body = text if len(text) <= POST_MAX else text[: POST_MAX - 1] + "…"


def _published(note: dict[str, Any]) -> datetime:
    """When a note was published (naive UTC), never later than now."""
    now = utcnow()
    value = note.get("published")
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # year 1 at +01:00 is before year 1 in UTC
        return now
    return min(moment, now)


def on_update(activity: dict[str, Any], actor: User) -> None:
    inner = activity.get("object")
    if isinstance(inner, dict) and inner.get("type") in actors.ACTOR_TYPES:
        if object_id(inner) == actors.actor_id(actor):
            actors.store_remote_actor(inner, fetched_from=actors.actor_id(actor))
        return
    note = _own_note(activity, actor)
    if note is None:
        return
    post = db.session.scalar(sa.select(Post).where(Post.ap_id == note["id"]))
    if post is not None and post.user_id == actor.id:
        _set_content(post, note)


def on_delete(activity: dict[str, Any], actor: User) -> None:
    target = object_id(activity.get("object"))
    if target is None:
        return
    if target == actors.actor_id(actor):
        actors.forget_remote_account(actor)
        return
    post = db.session.scalar(sa.select(Post).where(Post.ap_id == target))
    if post is not None and post.user_id == actor.id:
        db.session.delete(post)


# --- remote profiles --------------------------------------------------------------------

# The posts read from a remote account's outbox when its profile is looked up.
OUTBOX_POSTS = 20


@huey.task(retries=1, retry_delay=30, name="fetch_remote_profile")
def fetch_remote_profile(user_id: int) -> int:
    """Read a remote account's collections: their totals, and its latest public posts for
    its profile here; how many posts were added."""
    with app_context():
        user = db.session.get(User, user_id)
        remote = actors.remote_actor(user) if user is not None else None
        if user is None or remote is None:
            return 0
        remote.followers_count = _total(remote.followers_url)
        remote.following_count = _total(remote.following_url)
        added = 0
        try:
            for item in _first_page_items(remote):
                note = _own_note(item, user) if item.get("type") == "Create" else None
                if note is not None and activities.is_public_or_followers(note, user):
                    known = db.session.scalar(sa.select(Post.id).where(Post.ap_id == note["id"]))
                    if known is None:
                        store_remote_post(note, user)
                        added += 1
        except fedfetch.FetchError as exc:
            log.info("Outbox of %s not read: %s", user.username, exc.reason)
        db.session.commit()
        return added


def _total(url: str | None) -> int | None:
    """A collection's totalItems, None when it cannot be read."""
    if url is None:
        return None
    try:
        total = fedfetch.fetch_json(url).get("totalItems")
    except fedfetch.FetchError:
        return None
    return total if isinstance(total, int) and 0 <= total < 2**31 else None


def _first_page_items(remote: actors.RemoteActor) -> list[dict[str, Any]]:
    if remote.outbox is None:
        return []
    outbox = fedfetch.fetch_json(remote.outbox)
    total = outbox.get("totalItems")
    remote.posts_count = total if isinstance(total, int) and 0 <= total < 2**31 else None
    page = outbox.get("first")
    if isinstance(page, str):
        if actors.host_of(page) != actors.host_of(remote.outbox):
            return []
        page = fedfetch.fetch_json(page)
    if not isinstance(page, dict):
        page = outbox
    items = page.get("orderedItems") or page.get("items") or []
    return (
        [item for item in items[:OUTBOX_POSTS] if isinstance(item, dict)]
        if isinstance(items, list)
        else []
    )


# The activities we act on, by type; others are stored and ignored. Moderation, reactions,
# mentions and messages add theirs here, one line each.
HANDLERS: dict[str, Handler] = {
    "Follow": on_follow,
    "Accept": on_accept,
    "Reject": on_reject,
    "Undo": on_undo,
    "Create": on_create,
    "Update": on_update,
    "Delete": on_delete,
    "Like": federation_social.on_reaction,
    "Announce": federation_social.on_reaction,
    "Block": federation_social.on_block,
}
# What an Undo takes back, by the type of the activity undone.
UNDO_HANDLERS: dict[str, Handler] = {
    "Follow": undo_follow,
    "Like": federation_social.undo_reaction,
    "Announce": federation_social.undo_reaction,
}
