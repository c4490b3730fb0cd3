"""Reactions from other servers to our posts: likes (`Like`) and boosts (`Announce`), one of
each kind per account and post, counted on the post; an `Undo` takes one back."""

import enum
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from database import Model, _insert_unless_conflict, db, execute_dml, utcnow
from models import Post

# The longest activity id kept (a URL from another server).
ACTIVITY_ID_MAX = 2048


class ReactionKind(enum.StrEnum):
    """What an account did to a post; the value is the post's counter column."""

    LIKE = "like_count"
    ANNOUNCE = "announce_count"


class Reaction(Model):
    """`user_id` (an account, usually remote) liked or boosted `post_id`."""

    __tablename__ = "reaction"
    __table_args__ = (sa.UniqueConstraint("post_id", "user_id", "kind"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    post_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("post.id", ondelete="CASCADE"))
    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    # The id of the Like or Announce activity: its Undo names it.
    activity_id: so.Mapped[str | None] = so.mapped_column(sa.String(ACTIVITY_ID_MAX), unique=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


def recount(post_id: int, kind: ReactionKind) -> None:
    """Set the post's counter of `kind` from the rows: exact whatever arrived twice or was
    taken back."""
    count = (
        sa.select(sa.func.count())
        .where(Reaction.post_id == post_id, Reaction.kind == kind.name)
        .scalar_subquery()
    )
    execute_dml(sa.update(Post).where(Post.id == post_id).values({kind.value: count}))


def add(post_id: int, user_id: int, kind: ReactionKind, activity_id: str | None) -> bool:
    """Record a reaction; False when that account had already reacted so (the caller
    commits)."""
    row = {"post_id": post_id, "user_id": user_id, "kind": kind.name, "activity_id": activity_id}
    added = db.session.execute(_insert_unless_conflict(Reaction, row)).first() is not None
    if added:
        recount(post_id, kind)
    return added


def remove(
    user_id: int, kind: ReactionKind, *, activity_id: str | None, post_id: int | None
) -> bool:
    """Take back the reaction that `activity_id` made, or else `user_id`'s of `kind` on
    `post_id`; only the account's own. False when there was none (the caller commits)."""
    mine = sa.and_(Reaction.user_id == user_id, Reaction.kind == kind.name)
    if activity_id is not None:
        which = sa.and_(mine, Reaction.activity_id == activity_id)
    elif post_id is not None:
        which = sa.and_(mine, Reaction.post_id == post_id)
    else:
        return False
    post_ids = db.session.scalars(sa.select(Reaction.post_id).where(which)).all()
    execute_dml(sa.delete(Reaction).where(which))
    for found in post_ids:
        recount(found, kind)
    return bool(post_ids)
