"""What the Mastodon client API keeps beside the site's own rows: notifications as
Mastodon lists them (a follow, a mention, a private message), the markers of where a
reader stopped, and the Idempotency-Key of each new status.

The notifications are written when the site's own models say something happened (the
signals of models.py), in the same transaction.
"""

from datetime import datetime, timedelta
from typing import Any, Optional

import sqlalchemy as sa
import sqlalchemy.orm as so

from database import Model, db, utcnow
from models import Message, Post, User, followed, mention_recorded, message_sent

IDEMPOTENCY_LIFETIME = timedelta(hours=1)
KEY_MAX = 200
TIMELINES = ("home", "notifications")


class MastoNotification(Model):
    __tablename__ = "masto_notification"
    __table_args__ = (sa.Index("ix_masto_notification_user_id_id", "user_id", "id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    type: so.Mapped[str] = so.mapped_column(sa.String(16))
    from_user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    post_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("post.id", ondelete="CASCADE"), index=True
    )
    message_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    from_user: so.Mapped[User] = so.relationship(foreign_keys=[from_user_id])
    post: so.Mapped[Post | None] = so.relationship()
    message: so.Mapped[Message | None] = so.relationship()

    @classmethod
    def of(cls, user: User, types: list[str] | None = None) -> sa.Select:
        query = sa.select(cls).where(cls.user_id == user.id)
        return query.where(cls.type.in_(types)) if types else query

    @classmethod
    def owned(cls, user: User, id: int) -> Optional["MastoNotification"]:
        return db.session.scalar(cls.of(user).where(cls.id == id))

    @classmethod
    def clear(cls, user: User) -> None:
        db.session.execute(sa.delete(cls).where(cls.user_id == user.id))


@followed.connect
def notify_follow(follower: User, user: User) -> None:
    db.session.add(MastoNotification(user_id=user.id, type="follow", from_user_id=follower.id))


@mention_recorded.connect
def notify_mention(post: Post, user: User) -> None:
    """A post mentions a local account (mentions.py records each once, from this site or
    another): a `mention` notification."""
    db.session.add(
        MastoNotification(
            user_id=user.id, type="mention", from_user_id=post.user_id, post_id=post.id
        )
    )


@message_sent.connect
def notify_message(message: Message) -> None:
    db.session.add(
        MastoNotification(
            user_id=message.recipient_id,
            type="mention",
            from_user_id=message.sender_id,
            message_id=message.id,
        )
    )


class Marker(Model):
    """Where a reader stopped in a timeline (`home` or `notifications`)."""

    __tablename__ = "masto_marker"

    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    timeline: so.Mapped[str] = so.mapped_column(sa.String(16), primary_key=True)
    last_read_id: so.Mapped[str] = so.mapped_column(sa.String(32))
    version: so.Mapped[int] = so.mapped_column(default=0)
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    @classmethod
    def of(cls, user: User, timelines: list[str]) -> list["Marker"]:
        query = sa.select(cls).where(cls.user_id == user.id, cls.timeline.in_(timelines))
        return list(db.session.scalars(query))

    @classmethod
    def set(cls, user: User, timeline: str, last_read_id: str) -> "Marker":
        marker = db.session.get(cls, (user.id, timeline))
        if marker is None:
            marker = cls(user_id=user.id, timeline=timeline, version=0)
            db.session.add(marker)
        marker.last_read_id = last_read_id
        marker.version = (marker.version or 0) + 1
        marker.updated_at = utcnow()
        return marker


class IdempotencyKey(Model):
    """The status an `Idempotency-Key` made, so that a retried request makes no second."""

    __tablename__ = "masto_idempotency_key"
    __table_args__ = (sa.UniqueConstraint("user_id", "key", name="uq_masto_idempotency_key"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    key: so.Mapped[str] = so.mapped_column(sa.String(KEY_MAX))
    post_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("post.id", ondelete="CASCADE"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, index=True)

    @classmethod
    def post_for(cls, user: User, key: str) -> Post | None:
        """The post this key made within the last hour, if any."""
        query = (
            sa.select(Post)
            .join(cls, cls.post_id == Post.id)
            .where(
                cls.user_id == user.id,
                cls.key == key,
                cls.created_at > utcnow() - IDEMPOTENCY_LIFETIME,
            )
        )
        return db.session.scalar(query)

    @classmethod
    def remember(cls, user: User, key: str, post: Post) -> None:
        """Keep the key (replacing an expired use of it; the caller commits)."""
        db.session.execute(sa.delete(cls).where(cls.user_id == user.id, cls.key == key))
        db.session.add(cls(user_id=user.id, key=key, post_id=post.id))


def conversation_partners(user: User, before: int | None, limit: int) -> list[Any]:
    """(other user id, newest message id) of each conversation, newest first."""
    other = sa.case(
        (Message.sender_id == user.id, Message.recipient_id), else_=Message.sender_id
    ).label("other")
    newest = sa.func.max(Message.id).label("newest")
    query = (
        sa.select(other, newest)
        .where(sa.or_(Message.sender_id == user.id, Message.recipient_id == user.id))
        .group_by(other)
        .order_by(newest.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.having(newest < before)
    return list(db.session.execute(query))
