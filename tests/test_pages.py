"""The page fragments the page script swaps in, and the pages around posts, people and
messages (without a browser: what the server answers)."""

import pytest

from models import Message, User, db
from tests.helpers import add_posts, follow


def test_profile_header_fragment(client, auth, users):
    auth.login("alice")
    follow(client.application, users["alice"], users["bob"])
    html = client.get("/user/bob/header").get_data(as_text=True)
    assert "<html" not in html
    assert 'id="profile-header"' in html
    assert 'action="/unfollow/bob"' in html
    assert client.get("/user/nobody/header").status_code == 404


def test_newer_messages_are_fragments_and_count_as_read(app, client, auth, users):
    auth.login("bob")
    for text in ("one", "two", "three"):
        client.submit("/send_message/alice", {"message": text})
    auth.logout()
    auth.login("alice")
    with app.app_context():
        first = db.session.scalar(db.select(Message.id).order_by(Message.id))
    html = client.get(f"/messages/newer?after={first}").get_data(as_text=True)
    assert "<html" not in html
    assert html.index("three") < html.index("two") and "one" not in html
    with app.app_context():
        assert db.session.get(User, users["alice"]).unread_message_count() == 0
    assert client.get("/messages/newer?after=999999").get_data(as_text=True).strip() == ""


@pytest.mark.parametrize(
    ("posts", "expected"),
    [(0, ""), (1, "1 new post: show them"), (2, "2 new posts: show them")],
)
def test_new_posts_notice(app, client, auth, users, posts, expected):
    follow(app, users["alice"], users["bob"])
    add_posts(app, users["bob"], 1)
    auth.login("alice")
    add_posts(app, users["bob"], posts)
    add_posts(app, users["carol"], 2)  # not followed
    html = " ".join(client.get("/index/new_posts?after=1").get_data(as_text=True).split())
    if expected:
        assert expected in html
    else:
        assert "new-posts" not in html


def test_new_posts_notice_stops_counting_at_the_cap(app, client, auth, users):
    add_posts(app, users["alice"], 120)
    auth.login("alice")
    html = client.get("/index/new_posts?after=0").get_data(as_text=True)
    assert "99+ new posts" in html
