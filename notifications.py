"""Notifications: what the open pages of a user learn by polling (`GET /notifications`): a
task's progress, the unread message count. One row per user and name, replaced each time."""

import json
import time
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from database import Model, db


class Notification(Model):
    __table_args__ = (sa.Index("ix_notification_user_id_timestamp", "user_id", "timestamp"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(128))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    # A float (Unix time) so the browser can ask for "newer than" without parsing dates.
    timestamp: so.Mapped[float] = so.mapped_column(default=time.time)
    payload_json: so.Mapped[str] = so.mapped_column(sa.Text)

    # Typed loosely: models.py (where User lives) imports this module, not the other way.
    user: so.Mapped[Any] = so.relationship("User", back_populates="notifications")

    def get_data(self) -> Any:
        return json.loads(self.payload_json)


def notify(user_id: int, name: str, data: Any) -> Notification:
    """Replace that user's notification of that name with a new one (the caller commits)."""
    db.session.execute(
        sa.delete(Notification).where(Notification.user_id == user_id, Notification.name == name)
    )
    notification = Notification(name=name, payload_json=json.dumps(data), user_id=user_id)
    db.session.add(notification)
    return notification
