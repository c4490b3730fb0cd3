"""Mentions in posts: `@name` and `@name@host` are links, recorded, and tell a local user."""

import pytest
import sqlalchemy as sa

import mentions
from database import db
from formatting import linkify
from mentions import Mention
from models import Post, User
from tests.helpers import add_posts

SITE = "https://blog.example.org"


@pytest.fixture
def app_config():
    return {"SITE_URL": SITE}


@pytest.mark.parametrize(
    ("text", "handles"),
    [
        ("hi @bob", ["bob"]),
        ("hi @bob@remote.example!", ["bob@remote.example"]),
        (
            "@Bob@Remote.Example and @bob@remote.example",
            ["Bob@remote.example", "bob@remote.example"],
        ),
        ("@alice@blog.example.org is local", ["alice"]),
        ("@zed@127.0.0.3:8443 on a port", ["zed@127.0.0.3:8443"]),
        ("mail bob@remote.example is no mention", []),
        ("Hi @bob.", ["bob"]),
        ("twice @bob @bob", ["bob"]),
        (" ".join(f"@u{i}" for i in range(30)), [f"u{i}" for i in range(mentions.MENTIONS_MAX)]),
    ],
)
def test_handles_in_a_post(app, text, handles):
    with app.test_request_context():
        assert mentions.handles_in(text) == handles


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (
            "@bob@remote.example.",
            '<a class="mention" href="/user/bob@remote.example">@bob@remote.example</a>.',
        ),
        (
            "@alice@blog.example.org",
            '<a class="mention" href="/user/alice">@alice@blog.example.org</a>',
        ),
        ("Hi @bob.", 'Hi <a class="mention" href="/user/bob">@bob</a>.'),
        ("@b.@x.org", '<a class="mention" href="/user/b">@b</a>.@x.org'),
    ],
)
def test_remote_mentions_link_to_the_remote_profile_here(app, text, html):
    with app.test_request_context():
        assert str(linkify(text)) == html


def post_mentioning(client, body):
    return client.submit("/index", {"post": body})


def test_a_local_mention_tells_the_user(app, client, auth, users):
    auth.login("alice")
    post_mentioning(client, "hello @bob and @nobody and @alice")
    with app.app_context():
        rows = db.session.scalars(sa.select(Mention)).all()
        assert [row.user_id for row in rows] == [users["bob"]]  # not the author, not nobody
        assert mentions.unread_count(db.session.get(User, users["bob"])) == 1
        notes = db.session.get(User, users["bob"]).notifications.select()
        assert [(n.name, n.get_data()) for n in db.session.scalars(notes)] == [
            ("unread_mention_count", 1)
        ]
    auth.logout()
    auth.login("bob")
    page = client.get("/index").get_data(as_text=True)
    assert 'id="mention_count" class="badge rounded-pill text-bg-danger"' in page
    listed = client.get("/mentions").get_data(as_text=True)
    assert "hello " in listed and "Mark as read" in listed
    assert client.post("/mentions/read").status_code == 400  # no CSRF token
    client.submit("/mentions/read")
    with app.app_context():
        assert mentions.unread_count(db.session.get(User, users["bob"])) == 0
    assert "Mark as read" not in client.get("/mentions").get_data(as_text=True)
    assert 'id="mention_count" class="badge rounded-pill text-bg-danger d-none"' in client.get(
        "/mentions"
    ).get_data(as_text=True)


def test_mentions_by_a_blocked_account_are_hidden(app, client, auth, users):
    auth.login("bob")
    client.submit("/block/alice")
    auth.logout()
    auth.login("alice")
    post_mentioning(client, "are you there @bob?")
    with app.app_context():
        bob = db.session.get(User, users["bob"])
        assert mentions.unread_count(bob) == 0
        assert db.session.scalars(mentions.mentioning(bob)).all() == []


def test_the_api_records_mentions_too(app, client, users):
    token = client.post("/api/tokens", auth=("alice", "correct horse battery")).json["token"]
    response = client.post(
        "/api/posts", json={"body": "hey @carol"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201
    with app.app_context():
        assert mentions.unread_count(db.session.get(User, users["carol"])) == 1


def test_a_post_is_recorded_once(app, users):
    add_posts(app, users["alice"], ["@bob hi"])
    with app.test_request_context():
        post = db.session.scalar(sa.select(Post))
        assert mentions.record_known(post) == [db.session.get(User, users["bob"])]
        assert mentions.record_known(post) == []
        assert mentions.mentioned(post) == [db.session.get(User, users["bob"])]
