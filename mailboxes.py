"""Private messages, seen from one user (`Mailbox(user)`): sending, the inbox, what was
sent, and the unread count every open page shows."""

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

import blocks
from database import db, utcnow
from models import Message, User, message_sent
from notifications import notify


class Mailbox:
    """One user's private messages."""

    def __init__(self, user: User):
        self.user = user

    def send(self, recipient: User, body: str) -> Message:
        """Send `body` to `recipient` and refresh their unread badge (the caller commits)."""
        message = Message(author=self.user, recipient=recipient, body=body.strip())
        db.session.add(message)
        db.session.flush()
        message_sent.send(message)
        Mailbox(recipient).announce_unread()
        return message

    def unread_count(self) -> int:
        return db.session.execute(self.unread_select()).scalar_one()

    def unread_select(self) -> sa.Select[int]:
        """The number of unread messages, as a query (the page frame asks it together with
        the other badges)."""
        query = sa.select(sa.func.count()).where(
            Message.recipient_id == self.user.id,
            blocks.not_hidden_from(self.user, Message.sender_id),
        )
        if self.user.last_message_read_time is not None:
            query = query.where(Message.timestamp > self.user.last_message_read_time)
        return query

    def announce_unread(self) -> None:
        """Tell every open page of the user how many messages are unread now."""
        notify(self.user.id, "unread_message_count", self.unread_count())

    def received(self) -> sa.Select:
        """Messages sent to this user, newest first."""
        listed = self._listed(Message.recipient_id, Message.author)
        return listed.where(blocks.not_hidden_from(self.user, Message.sender_id))

    def sent(self) -> sa.Select:
        """Messages this user sent, newest first."""
        return self._listed(Message.sender_id, Message.recipient)

    def _listed(
        self, own_side: so.InstrumentedAttribute[int], other_side: so.InstrumentedAttribute[User]
    ) -> sa.Select:
        """The messages whose `own_side` is this user, newest first, each with the user on
        its `other_side` loaded."""
        return (
            sa.select(Message)
            .where(own_side == self.user.id)
            .options(so.joinedload(other_side))
            .order_by(Message.timestamp.desc(), Message.id.desc())
        )

    def received_one(self, message_id: int) -> sa.Select:
        """A message sent to this user (anyone else's looks like a missing one)."""
        return self.received().where(Message.id == message_id)

    def mark_read(self, up_to: datetime | None = None) -> None:
        """Messages received up to `up_to` (the newest one the reader saw; default now) are
        read; every open page's badge shows what is left."""
        moment = min(up_to, utcnow()) if up_to else utcnow()
        if self.user.last_message_read_time and self.user.last_message_read_time >= moment:
            return
        self.user.last_message_read_time = moment
        self.announce_unread()
