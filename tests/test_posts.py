"""Writing and deleting posts; the home timeline, explore and pagination."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from database import db, utcnow
from models import POST_MAX, Post, User, text_length
from tests.helpers import ACUTE, EMOJI, add_posts, at_the_limit, follow
from timeline import Timeline


def minutes_ago(minutes):
    return utcnow() - timedelta(minutes=minutes)


def bodies(html: str, candidates) -> list:
    """The candidate bodies present in the page, in page order."""
    found = [(html.find(f">{body}<"), body) for body in candidates]
    return [body for position, body in sorted(found) if position >= 0]


def post_bodies(app):
    with app.app_context():
        return list(db.session.scalars(sa.select(Post.body).order_by(Post.id)))


def only_post_id(app) -> int:
    with app.app_context():
        (post_id,) = db.session.scalars(sa.select(Post.id))
        return post_id


def test_write_a_post(client, auth, app):
    auth.login()
    response = client.submit("/index", {"post": "  my first post  "})
    assert response.status_code == 302
    assert response.headers["Location"] == "/index"
    assert post_bodies(app) == ["my first post"]
    assert "my first post" in client.get("/index").get_data(as_text=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "Write something first."),
        ("   ", "Write something first."),
        ("x" * 141, "Field cannot be longer than 140 characters."),
    ],
)
def test_bad_posts_are_refused(client, auth, app, body, message):
    auth.login()
    response = client.submit("/index", {"post": body})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert post_bodies(app) == []


def test_a_post_of_140_characters_is_fine(client, auth, app):
    auth.login()
    assert client.submit("/index", {"post": "y" * 140}).status_code == 302
    assert post_bodies(app) == ["y" * 140]


# What a browser sends and how many characters the site counts in it: code points, a line
# break one (browsers send CRLF), a combining mark one of its own. The page counts the same.
CHARACTER_COUNTS = [
    ("plain", "abc", 3),
    ("crlf", "a\r\nb\r\nc", 5),
    ("lone cr", "a\rb", 3),
    ("lf", "a\nb", 3),
    ("emoji", f"hi {EMOJI}", 4),
    ("astral", "\N{MATHEMATICAL BOLD CAPITAL A}\N{GOTHIC LETTER AHSA}", 2),
    ("flag", "\N{REGIONAL INDICATOR SYMBOL LETTER E}\N{REGIONAL INDICATOR SYMBOL LETTER S}", 2),
    ("combining", ACUTE, 2),
    ("precomposed", "\N{LATIN SMALL LETTER E WITH ACUTE}", 1),
]


@pytest.mark.parametrize(
    ("text", "count"), [case[1:] for case in CHARACTER_COUNTS], ids=[c[0] for c in CHARACTER_COUNTS]
)
def test_characters_are_code_points_and_a_line_break_is_one(text, count):
    assert text_length(text) == count


def test_a_post_at_the_limit_with_line_breaks_and_emoji_is_accepted_and_stored_with_lf(
    client, auth, app
):
    auth.login()
    body = at_the_limit()
    assert len(body) > POST_MAX  # counted naively (CR and LF), it would be refused
    assert client.submit("/index", {"post": body}).status_code == 302
    (stored,) = post_bodies(app)
    assert stored == body.replace("\r\n", "\n") and text_length(stored) == POST_MAX


def test_one_character_over_the_limit_is_refused(client, auth, app):
    auth.login()
    response = client.submit("/index", {"post": at_the_limit(extra=1)})
    assert response.status_code == 400
    assert f"cannot be longer than {POST_MAX} characters" in response.get_data(as_text=True)
    assert post_bodies(app) == []


def test_post_bodies_are_escaped(client, auth):
    auth.login()
    client.submit("/index", {"post": "<script>alert(1)</script>"})
    html = client.get("/index").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_home_timeline_has_own_and_followed_posts_newest_first(client, auth, app, users):
    follow(app, users["alice"], users["bob"])
    add_posts(app, users["bob"], ["bob one"], start=minutes_ago(4))
    add_posts(app, users["carol"], ["carol one"], start=minutes_ago(3))
    add_posts(app, users["alice"], ["alice one"], start=minutes_ago(2))
    add_posts(app, users["bob"], ["bob two"], start=minutes_ago(1))
    auth.login()
    html = client.get("/index").get_data(as_text=True)
    everything = ["bob one", "carol one", "alice one", "bob two"]
    assert bodies(html, everything) == ["bob two", "alice one", "bob one"]


def test_unfollowing_removes_posts_from_the_timeline(client, auth, app, users):
    follow(app, users["alice"], users["bob"])
    add_posts(app, users["bob"], ["bob one"])
    auth.login()
    assert "bob one" in client.get("/index").get_data(as_text=True)
    client.submit("/unfollow/bob")
    assert "bob one" not in client.get("/index").get_data(as_text=True)


def test_timeline_pagination(client, auth, app, users):
    add_posts(app, users["alice"], 7)  # "post 0" … "post 6", oldest first; 3 per page in tests
    auth.login()
    all_posts = [f"post {n}" for n in range(7)]
    pages = [
        bodies(client.get(f"/index?page={p}").get_data(as_text=True), all_posts) for p in (1, 2, 3)
    ]
    assert pages == [["post 6", "post 5", "post 4"], ["post 3", "post 2", "post 1"], ["post 0"]]
    first = client.get("/index").get_data(as_text=True)
    assert 'href="/index?page=2"' in first
    assert 'href="/index?page=0"' not in first
    last = client.get("/index?page=3").get_data(as_text=True)
    assert 'href="/index?page=2"' in last
    assert 'href="/index?page=4"' not in last


@pytest.mark.parametrize("page", ["0", "-1", "abc", "99999"])
def test_odd_page_numbers_do_not_fail(client, auth, app, users, page):
    add_posts(app, users["alice"], ["only post"])
    auth.login()
    response = client.get(f"/index?page={page}")
    assert response.status_code == 200


def test_explore_shows_everyone(client, auth, app, users):
    add_posts(app, users["bob"], ["bob one"], start=minutes_ago(2))
    add_posts(app, users["carol"], ["carol one"], start=minutes_ago(1))
    auth.login()
    html = client.get("/explore").get_data(as_text=True)
    assert bodies(html, ["bob one", "carol one"]) == ["carol one", "bob one"]
    assert 'name="post"' not in html


def test_delete_own_post(client, auth, app, users):
    add_posts(app, users["alice"], ["regret", "keeper"])
    auth.login()
    with app.app_context():
        post_id = db.session.scalar(sa.select(Post.id).where(Post.body == "regret"))
    html = client.get("/index").get_data(as_text=True)
    assert f'action="/post/{post_id}/delete' in html
    assert 'data-confirm="Delete this post?"' in html  # asked by static/confirm.js
    response = client.submit(f"/post/{post_id}/delete?next=/user/alice")
    assert response.status_code == 302
    assert response.headers["Location"] == "/user/alice"
    assert post_bodies(app) == ["keeper"]


def test_cannot_delete_someone_elses_post(client, auth, app, users):
    add_posts(app, users["bob"], ["bob's post"])
    post_id = only_post_id(app)
    auth.login()
    assert "/delete" not in client.get("/explore").get_data(as_text=True)
    assert client.submit(f"/post/{post_id}/delete").status_code == 404
    assert client.submit("/post/9999/delete").status_code == 404
    assert post_bodies(app) == ["bob's post"]


def test_delete_needs_post_and_csrf(client, auth, app, users):
    add_posts(app, users["alice"], ["still here"])
    post_id = only_post_id(app)
    auth.login()
    assert client.get(f"/post/{post_id}/delete").status_code == 405
    assert client.post(f"/post/{post_id}/delete").status_code == 400
    assert post_bodies(app) == ["still here"]


def test_timeline_count_matches_the_timeline(app, users):
    follow(app, users["alice"], users["bob"])
    add_posts(app, users["alice"], ["a1"], start=minutes_ago(4))
    add_posts(app, users["bob"], ["b1", "b2"], start=minutes_ago(3))
    add_posts(app, users["carol"], ["c1"], start=minutes_ago(1))
    with app.app_context():
        for username in users:
            user = db.session.get(User, users[username])
            assert Timeline(user).count() == len(db.session.scalars(Timeline(user).posts()).all())
