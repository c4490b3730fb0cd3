"""What other servers do to our users beyond following and posting: likes and boosts of our
posts (counted on them), blocks, mentions and direct messages. Each handler takes an
activity whose signature the inbox verified and the account that sent it, and is idempotent:
the same activity applied twice changes nothing more."""

import logging
from typing import Any

from flask import current_app

import blocks
import reactions
from database import MAX_ROW_ID, db
from models import Post, User
from reactions import ReactionKind

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
    return db.session.get(Post, int(number))


def refused_by(owner: User, account: User) -> bool:
    """Whether `owner` wants nothing from `account`: they block it."""
    return blocks.blocks(owner.id, account.id)


# --- likes and boosts -----------------------------------------------------------------------


def on_reaction(activity: dict, actor: User) -> None:
    """`Like` or `Announce` of one of our posts: counted on it (others' posts: ignored)."""
    kind = REACTION_TYPES.get(activity.get("type", ""))
    post = local_post(object_id(activity.get("object")))
    if kind is None or post is None or refused_by(post.author, actor):
        return
    reactions.add(post.id, actor.id, kind, object_id(activity))
    db.session.commit()


def on_undo_reaction(activity: dict, actor: User) -> None:
    """`Undo` of a `Like` or `Announce`: the count drops (only the actor's own)."""
    inner = activity.get("object")
    inner_type = inner.get("type") if isinstance(inner, dict) else None
    kinds = [REACTION_TYPES[inner_type]] if inner_type in REACTION_TYPES else list(ReactionKind)
    target = local_post(object_id(inner.get("object"))) if isinstance(inner, dict) else None
    for kind in kinds:
        reactions.remove(
            actor.id,
            kind,
            activity_id=object_id(inner),
            post_id=target.id if target is not None else None,
        )
    db.session.commit()
