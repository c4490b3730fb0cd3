"""Deleting your own account from /settings: locked and signed out at once, then the worker
deletes everything in it (in immediate mode here; with a real consumer at the end)."""

import pytest
import sqlalchemy as sa

import administration
from database import db
from jobs import Task
from mailboxes import Mailbox
from models import ApiToken, Message, Post, User, followers
from tests.conftest import PASSWORD
from tests.helpers import add_posts, follow
from tests.live import Browser, wait_for


def user_row(app, username):
    with app.app_context():
        return db.session.scalar(sa.select(User.id).where(User.username == username))


def rows_of(app, user_id) -> dict:
    with app.app_context():
        count = lambda q: db.session.execute(sa.select(sa.func.count()).where(q)).scalar_one()  # noqa: E731
        return {
            "posts": count(Post.user_id == user_id),
            "messages": count(
                sa.or_(Message.sender_id == user_id, Message.recipient_id == user_id)
            ),
            "follows": count(
                sa.or_(followers.c.follower_id == user_id, followers.c.followed_id == user_id)
            ),
            "tasks": count(Task.user_id == user_id),
            "tokens": count(ApiToken.user_id == user_id),
        }


def give_alice_things(app, users):
    alice = users["alice"]
    add_posts(app, alice, 23)
    add_posts(app, users["bob"], 2)
    follow(app, alice, users["bob"])
    follow(app, users["bob"], alice)
    with app.app_context():
        me, bob = db.session.get_one(User, alice), db.session.get_one(User, users["bob"])
        Mailbox(me).send(bob, "hi bob")
        Mailbox(bob).send(me, "hi alice")
        ApiToken.issue(me)
        db.session.commit()


def test_a_wrong_password_deletes_nothing(app, client, auth, users, immediate):
    give_alice_things(app, users)
    auth.login()
    response = client.submit("/settings/delete", {"current_password": "wrong"})
    assert response.status_code == 400
    assert "That is not your current password." in response.get_data(as_text=True)
    assert user_row(app, "alice") == users["alice"]
    assert client.get("/index").status_code == 200  # still signed in


def test_delete_your_account(app, client, auth, users, immediate, monkeypatch):
    app.config["MICROBLOG_EXPORT_BATCH_SIZE"] = 5  # several batches of posts
    give_alice_things(app, users)
    alice = users["alice"]
    assert rows_of(app, alice) == {
        "posts": 23,
        "messages": 2,
        "follows": 2,
        "tasks": 0,
        "tokens": 1,
    }
    auth.login()
    assert 'action="/settings/delete"' in client.get("/settings").get_data(as_text=True)

    response = client.submit("/settings/delete", {"current_password": PASSWORD})

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert client.get("/index").status_code == 302  # signed out
    assert user_row(app, "alice") is None
    assert rows_of(app, alice) == {"posts": 0, "messages": 0, "follows": 0, "tasks": 0, "tokens": 0}
    assert rows_of(app, users["bob"])["posts"] == 2
    # The username is free.
    register = {
        "username": "alice",
        "email": "alice@example.com",
        "password": "another good password",
        "password2": "another good password",
    }
    assert client.submit("/register", register).status_code == 302
    assert user_row(app, "alice") is not None


def test_the_last_enabled_admin_cannot_delete_their_account(app, client, auth, admin, users):
    auth.login("root")

    response = client.submit("/settings/delete", {"current_password": PASSWORD})

    assert response.status_code == 302 and response.headers["Location"] == "/settings"
    page = client.get("/settings").get_data(as_text=True)
    assert "That is the last enabled admin: make another account an admin first." in page
    with app.app_context():
        root = db.session.get_one(User, admin)
        assert root.is_admin and not root.disabled
        administration.make_admin(db.session.get_one(User, users["bob"]))
        db.session.commit()
    # With another admin it goes ahead.
    response = client.submit("/settings/delete", {"current_password": PASSWORD})
    assert response.headers["Location"] == "/login"
    with app.app_context():
        assert db.session.get_one(User, admin).disabled


@pytest.mark.consumer
def test_locked_at_once_and_deleted_by_the_worker(app, users, live):
    give_alice_things(app, users)
    site = live()
    site.start_web()
    browser, elsewhere = Browser(site.url), Browser(site.url)
    browser.login("alice", PASSWORD)
    elsewhere.login("alice", PASSWORD)

    status, _ = browser.submit("/settings/delete", {"current_password": PASSWORD})

    # No worker yet: the account is locked and every session ended, nothing deleted so far.
    assert status == 200
    assert site.query("SELECT disabled FROM user WHERE username = 'alice'") == [(1,)]
    assert b"Logout" not in elsewhere.get("/index")[1]
    status, page = Browser(site.url).submit("/login", {"username": "alice", "password": PASSWORD})
    assert b"Logout" not in page
    site.start_consumer()
    wait_for(
        lambda: site.query("SELECT id FROM user WHERE username = 'alice'") == [],
        what="the account to be deleted",
    )
    assert rows_of(app, users["alice"])["posts"] == 0
    assert site.query("SELECT count(*) FROM post") == [(2,)]
