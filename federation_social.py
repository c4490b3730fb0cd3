"""Between our users and other servers' accounts, beyond following and posting: likes and
boosts of our posts (counted on them), blocks both ways, mentions both ways, and private
messages as direct notes.

Inbound, each handler takes an activity whose signature the inbox verified and the account
that sent it, and is idempotent; the caller (federation_in.apply) commits. Outbound, what a
local user did is sent by the worker once it is committed (`after_commit`)."""

import logging
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from flask import current_app
from markupsafe import Markup

import activities
import actors
import blocks
import federation_out
import fedfetch
import mentions
import reactions
import remote_content
from commit_hooks import after_commit
from database import MAX_ROW_ID, db
from follows import Follows
from formatting import linkify
from mailboxes import Mailbox
from models import MESSAGE_MAX, Message, Post, User, message_sent, published
from reactions import ReactionKind
from worker import app_context, huey

log = logging.getLogger("huey.microblog")

# The kind of reaction each activity type makes.
REACTION_TYPES = {"Like": ReactionKind.LIKE, "Announce": ReactionKind.ANNOUNCE}


def object_id(value: Any) -> str | None:
    """The id an activity's `object` names: a URL, or an embedded object's `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and len(value) <= reactions.ACTIVITY_ID_MAX else None


def local_post(url: str | None) -> Post | None:
    """Our own post whose ActivityPub id (`<SITE_URL>/post/<id>`) is `url`, if any."""
    prefix = str(current_app.config["SITE_URL"]).rstrip("/") + "/post/"
    if not url or not url.startswith(prefix):
        return None
    number = url[len(prefix) :]
    if not number.isascii() or not number.isdecimal() or int(number) > MAX_ROW_ID:
        return None
    post = db.session.get(Post, int(number))
    return post if post is not None and post.ap_id is None else None


def federating() -> bool:
    return bool(current_app.config["FEDERATION"])


def as_the_site() -> AbstractContextManager[object]:
    """A request to SITE_URL, for the worker: a note's links (linkify) are built with
    url_for, which needs one."""
    return current_app.test_request_context(base_url=str(current_app.config["SITE_URL"]))


# --- likes and boosts -----------------------------------------------------------------------


def on_reaction(activity: dict, actor: User) -> None:
    """`Like` or `Announce` of one of our posts: counted on it (others' posts: ignored)."""
    kind = REACTION_TYPES.get(str(activity.get("type")))
    post = local_post(object_id(activity.get("object")))
    if kind is None or post is None or blocks.hidden_from(post.author, actor):
        return
    reactions.add(post.id, actor.id, kind, object_id(activity))


def undo_reaction(reaction: dict, actor: User) -> None:
    """`Undo` of a `Like` or `Announce` (the activity undone): the count drops; only the
    actor's own."""
    kind = REACTION_TYPES.get(str(reaction.get("type")))
    if kind is None:
        return
    target = local_post(object_id(reaction.get("object")))
    post_id = target.id if target is not None else None
    reactions.remove(actor.id, kind, activity_id=object_id(reaction), post_id=post_id)


# --- blocks ---------------------------------------------------------------------------------


def on_block(activity: dict, actor: User) -> None:
    """A remote account blocks one of our users: they no longer follow each other (its own
    server hides the rest)."""
    user = actors.local_user_for_actor(object_id(activity.get("object")) or "")
    if user is None:
        return
    Follows(actor).unfollow(user)
    Follows(user).unfollow(actor)
    actors.cancel_follow_request(user, actor)


def block_activity(user: User, other: User) -> dict[str, Any]:
    """`user` blocks `other` (remote); the same id each time, so that an Undo names it."""
    actor = actors.local_actor_id(user.id)
    return activities.with_context(
        {
            "id": f"{actor}/blocks/{other.id}",
            "type": "Block",
            "actor": actor,
            "object": actors.actor_id(other),
        }
    )


@huey.task(name="send_block")
def send_block(user_id: int, other_id: int, undo: bool) -> bool:
    """Tell a remote account's server that a local user blocks it (or no longer does)."""
    with app_context():
        user, remote = db.session.get(User, user_id), db.session.get(actors.RemoteActor, other_id)
        if user is None or remote is None or not federating():
            return False
        block = block_activity(user, remote.user)
        if undo:
            block = activities.undo(block["actor"], block)
        federation_out.send(block, user.id, [remote.inbox])
        return True


def account_block_changed(user: User, other: User, *, blocked: bool) -> None:
    """A local user blocked (or unblocked) an account: a remote one's server is told, once
    that is committed."""
    if other.domain is not None and federating():
        after_commit(send_block, user.id, other.id, not blocked)


# --- mentions -------------------------------------------------------------------------------


def unknown_handles(post: Post) -> list[str]:
    """The `name@host` a local post mentions that name no account here yet."""
    wanted = [handle for handle in mentions.handles_in(post.body) if "@" in handle]
    known = set(db.session.scalars(sa.select(User.username).where(User.username.in_(wanted))))
    return [handle for handle in wanted if handle not in known]


@published.connect
def post_published(post: Post) -> None:
    """A local post: its mentions of known accounts are recorded now; the others are looked
    up, and every mentioned remote account's server gets the post, by the worker."""
    if post.author.domain is not None:
        return
    mentions.record_known(post)
    if federating() and any("@" in handle for handle in mentions.handles_in(post.body)):
        after_commit(deliver_mentions, post.id)


@huey.task(name="deliver_mentions")
def deliver_mentions(post_id: int) -> int:
    """Find the remote accounts a local post mentions (WebFinger), record them, and send
    the post to each one's server; how many servers were sent it."""
    with app_context():
        post = db.session.get(Post, post_id)
        if post is None:
            return 0
        found = []
        for handle in unknown_handles(post):
            try:
                found.append(fedfetch.remote_account(handle))
            except fedfetch.FetchError as exc:
                log.info("Mention of %s in post %s not delivered: %s", handle, post_id, exc)
        mentions.record(post, found)
        db.session.commit()
        inboxes = {
            remote.delivery_inbox()
            for account in mentions.mentioned(post)
            if (remote := actors.remote_actor(account)) is not None
        }
        inboxes -= set(actors.remote_follower_inboxes(post.author))  # they have it already
        with as_the_site():
            create = activities.create(post)
        federation_out.send(create, post.user_id, inboxes)
        return len(inboxes)


def local_recipients(note: dict[str, Any]) -> list[User]:
    """Our users a note names: in its Mention tags and its addressing."""
    urls = [object_id(value) for value in activities.audience(note)]
    tags = note.get("tag")
    for tag in tags if isinstance(tags, list) else [tags]:
        if isinstance(tag, dict) and tag.get("type") == "Mention":
            urls.append(object_id(tag.get("href")))
    found: dict[int, User] = {}
    for url in urls:
        user = actors.local_user_for_actor(url) if url else None
        if user is not None and user.is_active:
            found[user.id] = user
    return list(found.values())


def mentions_someone_here(note: dict[str, Any]) -> bool:
    """Whether a note mentions or addresses one of our users (then it is kept even when
    none of them follows its author)."""
    return bool(local_recipients(note))


def on_note(note: dict[str, Any], actor: User, post: Post | None) -> None:
    """Each Note another server creates: a post kept here tells the users it mentions; a
    direct note (neither public nor for followers) is a private message to each of ours it
    names."""
    recipients = local_recipients(note)
    if post is not None:
        mentions.record(post, recipients)
    elif is_direct(note, actor):
        for recipient in recipients:
            receive_message(note, actor, recipient)


def is_direct(note: dict[str, Any], actor: User) -> bool:
    """Whether a note is for the accounts it names only: not public, not for followers."""
    return not activities.is_public_or_followers(note, actor)


# --- private messages -----------------------------------------------------------------------


def receive_message(note: dict[str, Any], sender: User, recipient: User) -> None:
    """A direct note to one of our users, as a private message (once; none from an
    account the recipient blocks)."""
    note_id = object_id(note)
    if note_id is None or blocks.hidden_from(recipient, sender):
        return
    exists = sa.select(Message.id).where(
        Message.recipient_id == recipient.id, Message.ap_id == note_id
    )
    if db.session.scalar(exists) is not None:
        return
    content = note.get("content")
    html = remote_content.clean_html(content[:100_000]) if isinstance(content, str) else ""
    text = remote_content.html_to_text(html) or "…"
    body = text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"
    message = Mailbox(sender).send(recipient, body)
    message.ap_id, message.html = note_id, html


def message_note(message: Message) -> dict[str, Any]:
    """A private message to a remote account as a direct Note: addressed to that one
    actor, mentioning it, never public."""
    sender, recipient = message.author, message.recipient
    to = actors.actor_id(recipient)
    link = Markup('<span class="h-card"><a href="%s" class="u-url mention">%s</a></span>') % (
        to,
        activities.handle_of(recipient),
    )
    note_id = f"{actors.local_actor_id(sender.id)}/messages/{message.id}"
    return {
        "id": note_id,
        "type": "Note",
        "attributedTo": actors.local_actor_id(sender.id),
        "content": str(Markup("<p>%s %s</p>") % (link, linkify(message.body))),
        "published": activities.iso(message.timestamp),
        "to": [to],
        "cc": [],
        "tag": [{"type": "Mention", "href": to, "name": activities.handle_of(recipient)}],
    }


@huey.task(name="send_direct_message")
def send_direct_message(message_id: int) -> bool:
    """Deliver a private message to a remote account's inbox (its own, not the shared one:
    the note is for that actor alone)."""
    with app_context():
        message = db.session.get(Message, message_id)
        remote = actors.remote_actor(message.recipient) if message is not None else None
        if message is None or remote is None or not federating():
            return False
        with as_the_site():
            note = message_note(message)
        create = activities.with_context(
            {
                "id": note["id"] + "/activity",
                "type": "Create",
                "actor": note["attributedTo"],
                "to": note["to"],
                "cc": [],
                "object": note,
            }
        )
        federation_out.send(create, message.sender_id, [remote.inbox])
        return True


@message_sent.connect
def message_written(message: Message) -> None:
    """A local user wrote to a remote account: the worker delivers it once committed."""
    if message.author.domain is None and message.recipient.domain is not None and federating():
        after_commit(send_direct_message, message.id)
