"""What the frame of every signed-in page shows beside its content: the unread badges of
messages and mentions, and whether any task banner is due. One query answers all three;
asked one by one, they cost a page more than the counting itself."""

from dataclasses import dataclass

import sqlalchemy as sa
from flask import g

import mentions
from database import db
from mailboxes import Mailbox
from models import User
from user_tasks import banner_tasks


@dataclass(frozen=True)
class FrameState:
    unread_messages: int
    unread_mentions: int
    has_task_banners: bool


def frame_state(user: User) -> FrameState:
    """The frame's state for `user`, asked once per request."""
    known: dict[int, FrameState] = g.setdefault("frame_state", {})
    if user.id not in known:
        query = sa.select(
            Mailbox(user).unread_select().scalar_subquery(),
            mentions.unread_select(user).scalar_subquery(),
            banner_tasks(user).exists(),
        )
        known[user.id] = FrameState(*db.session.execute(query).one())
    return known[user.id]
