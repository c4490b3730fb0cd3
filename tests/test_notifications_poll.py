"""The notifications poll: the current user's notifications only, and no writes."""

import sqlalchemy as sa

from database import db
from models import User
from notifications import notify


def add_notification(app, username, name, data):
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == username))
        notification = notify(user.id, name, data)
        db.session.commit()
        return notification.timestamp


def test_poll_returns_own_notifications_newer_than_since(app, client, auth):
    first = add_notification(app, "alice", "unread_message_count", 3)
    add_notification(app, "bob", "unread_message_count", 7)
    auth.login("alice")
    assert client.get("/notifications").get_json() == [
        {"name": "unread_message_count", "data": 3, "timestamp": first}
    ]
    assert client.get(f"/notifications?since={first}").get_json() == []
    second = add_notification(app, "alice", "task_progress", {"progress": 50})
    assert client.get(f"/notifications?since={first}").get_json() == [
        {"name": "task_progress", "data": {"progress": 50}, "timestamp": second}
    ]


def test_poll_requires_login(client, users):
    response = client.get("/notifications")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_poll_after_logout_is_refused(client, auth):
    auth.login("alice")
    auth.logout()
    assert client.get("/notifications").status_code == 302


def test_poll_does_not_count_as_a_visit(app, client, auth):
    auth.login("alice")
    with app.app_context():
        db.session.execute(sa.update(User).values(last_seen=None))
        db.session.commit()
    client.get("/notifications?since=0")
    with app.app_context():
        assert db.session.scalar(sa.select(User.last_seen).where(User.username == "alice")) is None
    client.get("/index")
    with app.app_context():
        assert db.session.scalar(sa.select(User.last_seen).where(User.username == "alice"))


def test_poll_ignores_junk_since(client, auth):
    auth.login("alice")
    for since in ["abc", "nan", "inf", "-1e309", ""]:
        assert client.get(f"/notifications?since={since}").status_code == 200
