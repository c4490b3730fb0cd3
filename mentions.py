"""Mentions: `@name` and `@name@host` in a post. Each mentioned account is recorded with the
post; a local user learns of it (an unread count in the navbar, the posts at /mentions). A
local post's mentions of remote accounts become Mention tags, addressed and delivered to
them (federation_social.py)."""

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

import blocks
import formatting
import notifications
from database import Model, _insert_unless_conflict, db, execute_dml, utcnow
from models import Post, User, mention_recorded

# The most accounts one post may mention: each may cost a lookup and a delivery.
MENTIONS_MAX = 10


class Mention(Model):
    """`post_id` mentions `user_id` (a local or remote account)."""

    __tablename__ = "mention"
    __table_args__ = (sa.Index("ix_mention_user_id_created_at", "user_id", "created_at"),)

    post_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("post.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    # Whether the mentioned (local) user has seen it on /mentions.
    seen: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())


def handles_in(text: str) -> list[str]:
    """The accounts `text` mentions, as usernames here: `name` for a local one (also when
    written `@name@<this site>`), `name@host` for a remote one; each once, in order, at
    most MENTIONS_MAX."""
    here = formatting.site_host()
    found = {
        formatting.mentioned_username(match.group(1), match.group(2), here)[1]: None
        for match in formatting.MENTION.finditer(text)
    }
    return [name for name in found if name][:MENTIONS_MAX]


def record(post: Post, accounts: list[User]) -> list[User]:
    """Record that `post` mentions `accounts` (its author aside), and tell the local ones
    who do not block the author — on their pages and through the `mention_recorded` signal (the
    Mastodon API's notifications); the accounts recorded (the caller commits)."""
    recorded = []
    for account in accounts:
        if account.id == post.user_id:
            continue
        values = {"post_id": post.id, "user_id": account.id}
        if db.session.execute(_insert_unless_conflict(Mention, values)).first() is not None:
            recorded.append(account)
            if account.domain is None and not blocks.blocks(account.id, post.user_id):
                mention_recorded.send(post, user=account)
                notify(account)
    return recorded


def record_known(post: Post) -> list[User]:
    """Record the mentions of `post` that name accounts this site knows (no lookups)."""
    handles = handles_in(post.body)
    if not handles:
        return []
    db.session.flush()  # the post's id
    accounts = db.session.scalars(sa.select(User).where(User.username.in_(handles))).all()
    return record(post, list(accounts))


def mentioned(post: Post) -> list[User]:
    """The accounts `post` mentions."""
    query = sa.select(User).join(Mention, Mention.user_id == User.id)
    return list(db.session.scalars(query.where(Mention.post_id == post.id).order_by(User.id)))


# --- what a mentioned user sees ---------------------------------------------------------------


def unread_count(user: User) -> int:
    return db.session.execute(unread_select(user)).scalar_one()


def unread_select(user: User) -> sa.Select[int]:
    """The number of `user`'s unread mentions, as a query (the page frame asks it together
    with the other badges)."""
    return (
        sa.select(sa.func.count())
        .select_from(Mention)
        .join(Post, Post.id == Mention.post_id)
        .where(
            Mention.user_id == user.id,
            Mention.seen.is_(False),
            blocks.not_hidden_from(user, Post.user_id),
        )
    )


def notify(user: User) -> None:
    """Every open page of `user` updates its Mentions badge (the page poller)."""
    notifications.notify(user.id, "unread_mention_count", unread_count(user))


def mentioning(user: User) -> sa.Select:
    """The posts that mention `user`, newest first (none by accounts they block)."""
    return (
        sa.select(Post)
        .join(Mention, Mention.post_id == Post.id)
        .where(Mention.user_id == user.id, blocks.not_hidden_from(user, Post.user_id))
        .options(so.joinedload(Post.author))
        .order_by(Mention.created_at.desc(), Post.id.desc())
    )


def mark_read(user: User) -> None:
    execute_dml(
        sa.update(Mention)
        .where(Mention.user_id == user.id, Mention.seen.is_(False))
        .values(seen=True)
    )
    notify(user)
