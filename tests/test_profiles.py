"""Profile pages, editing a profile, following and last-seen."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from database import db, utcnow
from models import User, followers


def following_pairs(app):
    with app.app_context():
        return set(db.session.execute(sa.select(followers.c.follower_id, followers.c.followed_id)))


def test_profile_page(client, auth, app, users):
    with app.app_context():
        db.session.get(User, users["bob"]).about_me = "I like <b>bold</b> claims"
        db.session.commit()
    auth.login()
    html = client.get("/user/bob").get_data(as_text=True)
    assert 'src="/avatar/bob/128.svg"' in html
    assert "I like &lt;b&gt;bold&lt;/b&gt; claims" in html
    assert "Last seen" in html
    assert 'class="followers-count">0<' in html
    assert 'action="/follow/bob"' in html


def test_avatar_is_a_gravatar_of_the_lowercased_email_when_turned_on(app, make_user):
    user_id = make_user("dora", email=" Dora@Example.com ")
    app.config["MICROBLOG_GRAVATAR"] = True
    with app.test_request_context():
        avatar = db.session.get(User, user_id).avatar(80)
    # md5("dora@example.com")
    assert avatar == (
        "https://www.gravatar.com/avatar/397634828f9a0d2608cf516642222ad7?d=identicon&s=80"
    )


def test_follow_and_unfollow(client, auth, app, users):
    auth.login()
    response = client.submit("/follow/bob")
    assert response.headers["Location"] == "/user/bob"
    assert following_pairs(app) == {(users["alice"], users["bob"])}
    html = client.get("/user/bob").get_data(as_text=True)
    assert 'class="followers-count">1<' in html
    assert 'action="/unfollow/bob"' in html
    assert 'class="following-count">1<' in client.get("/user/alice").get_data(as_text=True)

    client.submit("/follow/bob")  # twice is harmless
    assert following_pairs(app) == {(users["alice"], users["bob"])}

    client.submit("/unfollow/bob")
    assert following_pairs(app) == set()


def test_cannot_follow_yourself(client, auth, app):
    auth.login()
    response = client.submit("/follow/alice", follow_redirects=True)
    assert "You cannot follow or unfollow yourself." in response.get_data(as_text=True)
    assert following_pairs(app) == set()


@pytest.mark.parametrize("action", ["follow", "unfollow"])
def test_cannot_follow_unknown_users(client, auth, app, action):
    auth.login()
    response = client.submit(f"/{action}/ghost", follow_redirects=True)
    assert "User ghost not found." in response.get_data(as_text=True)
    assert following_pairs(app) == set()


@pytest.mark.parametrize("action", ["follow", "unfollow"])
def test_follow_needs_post_csrf_and_login(client, auth, app, action):
    assert client.submit(f"/{action}/bob").status_code == 302  # to the login page
    auth.login()
    assert client.get(f"/{action}/bob").status_code == 405
    assert client.post(f"/{action}/bob").status_code == 400
    assert following_pairs(app) == set()


def test_edit_profile(client, auth, app, users):
    auth.login()
    page = client.get("/edit_profile").get_data(as_text=True)
    assert 'value="alice"' in page
    response = client.submit("/edit_profile", {"username": "alicia", "about_me": "Hello"})
    assert response.status_code == 302
    with app.app_context():
        user = db.session.get(User, users["alice"])
        assert (user.username, user.about_me) == ("alicia", "Hello")
    assert client.get("/user/alicia").status_code == 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "bob", "about_me": ""}, "That username is taken."),
        ({"username": "", "about_me": ""}, "This field is required."),
        ({"username": "alice", "about_me": "x" * 141}, "cannot be longer than 140"),
    ],
)
def test_edit_profile_rejects_bad_input(client, auth, app, users, data, message):
    auth.login()
    response = client.submit("/edit_profile", data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, users["alice"]).username == "alice"


def test_keeping_your_own_username_is_fine(client, auth):
    auth.login()
    assert (
        client.submit("/edit_profile", {"username": "alice", "about_me": "hi"}).status_code == 302
    )


def test_last_seen_is_written_at_most_once_a_minute(client, auth, app, users):
    auth.login()
    long_ago = utcnow() - timedelta(hours=2)
    with app.app_context():
        db.session.get(User, users["alice"]).last_seen = long_ago
        db.session.commit()

    client.get("/index")
    with app.app_context():
        first = db.session.get(User, users["alice"]).last_seen
    assert first > long_ago + timedelta(hours=1)

    client.get("/explore")
    with app.app_context():
        assert db.session.get(User, users["alice"]).last_seen == first

    with app.app_context():
        db.session.get(User, users["alice"]).last_seen = first - timedelta(seconds=61)
        db.session.commit()
    client.get("/explore")
    with app.app_context():
        assert db.session.get(User, users["alice"]).last_seen > first - timedelta(seconds=1)


def test_dates_are_machine_readable_utc_for_the_browser(client, auth):
    auth.login()
    client.submit("/index", {"post": "dated"})
    html = client.get("/index").get_data(as_text=True)
    assert '<time class="relative-time" datetime="' in html
    assert 'Z" title="' in html
