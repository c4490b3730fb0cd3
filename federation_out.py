"""What this site tells other servers: new and deleted posts, profile changes, deleted
accounts, follows and unfollows of remote accounts. Each is an activity sent to the servers
concerned (one delivery per server: its shared inbox where it has one) by the worker.

Callers commit first, then call these: a delivery never carries what a rollback undid.
"""

import logging
from typing import Any

from flask import current_app

import activities
import actors
import blocks
import deliveries
from database import db
from follows import Follows
from mailer import site_link
from models import Post, User

log = logging.getLogger("huey.microblog")


def federating() -> bool:
    return bool(current_app.config["FEDERATION"])


def send(activity: dict[str, Any], signer_id: int | None, inboxes: list[str] | set[str]) -> None:
    """Deliver `activity` to each distinct inbox, signed by the key of local user
    `signer_id` (None: the instance actor): stored and sent by the worker (deliveries.py),
    which also keeps the key, so that an account's last activity (its own deletion) can
    still be signed after the account is gone."""
    if inboxes and federating():
        deliveries.deliver(activity, signer_id=signer_id, inboxes=sorted(set(inboxes)))


# --- what local users do ----------------------------------------------------------------


def post_published(post: Post) -> None:
    """A new local post goes to the servers of its author's followers."""
    if federating():
        inboxes = actors.remote_follower_inboxes(post.author)
        send(activities.create(post), post.author.id, inboxes)


def post_deleted(user: User, post_id: int) -> None:
    """A local post was deleted (and committed): its id answers with a Tombstone from now
    on, and the followers' servers are told."""
    if not federating():
        return
    ap_id = site_link("posts.post", post_id=post_id)
    actors.bury(ap_id)
    db.session.commit()
    actor = actors.local_actor_id(user.id)
    delete = activities.delete(actor, ap_id, to=[activities.PUBLIC])
    send(delete, user.id, actors.remote_follower_inboxes(user))


def profile_updated(user: User) -> None:
    if federating():
        send(activities.update_person(user), user.id, actors.remote_follower_inboxes(user))


def account_deleted(user: User) -> None:
    """Before a local account's rows go: its actor's deletion, to the servers of everyone
    it follows or is followed by."""
    if not federating() or user.domain is not None:
        return
    inboxes = set(actors.remote_follower_inboxes(user))
    for followed in db.session.scalars(user.following.select().where(User.domain.is_not(None))):
        remote = actors.remote_actor(followed)
        if remote is not None:
            inboxes.add(remote.delivery_inbox())
    actor = actors.local_actor_id(user.id)
    send(activities.delete(actor, actor, to=[activities.PUBLIC]), user.id, inboxes)


def change_following(follower: User, followed: User, follow: bool) -> None:
    """Follow or unfollow anyone (commits): a local account at once; a remote one by asking
    its server, and for real only once it accepts. Nobody follows across a block."""
    if follow and blocks.either_blocks(follower.id, followed.id):
        return
    if followed.domain is not None:
        (follow_remote if follow else unfollow_remote)(follower, followed)
        return
    if follow:
        Follows(follower).follow(followed)
    else:
        Follows(follower).unfollow(followed)
    db.session.commit()


def follow_remote(follower: User, followed: User) -> None:
    """Ask a remote account's server to let `follower` follow it (commits); the follow is
    "requested" until it accepts."""
    remote = actors.remote_actor(followed)
    if remote is None or Follows(follower).is_following(followed):
        return
    if actors.follow_request(follower, followed) is not None:
        return
    follow = activities.follow(follower, remote.actor_url)
    actors.request_follow(follower, followed, follow["id"])
    db.session.commit()
    send(follow, follower.id, [remote.inbox])


def unfollow_remote(follower: User, followed: User) -> None:
    """Stop following (or asking to follow) a remote account, and tell its server (commits)."""
    remote = actors.remote_actor(followed)
    if remote is None:
        return
    pending = actors.cancel_follow_request(follower, followed)
    was_following = Follows(follower).is_following(followed)
    Follows(follower).unfollow(followed)
    db.session.commit()
    if pending is None and not was_following:
        return
    follow = activities.follow(follower, remote.actor_url)
    if pending is not None:
        follow["id"] = pending
    undo = activities.undo(actors.local_actor_id(follower.id), follow)
    send(undo, follower.id, [remote.inbox])
