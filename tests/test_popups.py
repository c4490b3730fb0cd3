"""The hover card at /user/<username>/popup."""

import pytest

from tests.conftest import CSRF_FIELD

# (what a user typed, how it must appear in the HTML)
HOSTILE = [
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ('<img src=x onerror="alert(1)">', "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"),
]


def test_popup_shows_the_user(client, auth, make_user):
    make_user("dave", about_me="I like trains")
    auth.login("dave")
    client.submit("/index", {"post": "choo choo"})
    auth.logout()
    auth.login("alice")
    client.submit("/follow/dave")
    html = client.get("/user/dave/popup").get_data(as_text=True)
    assert "<html" not in html, "a fragment, not a page"
    assert 'href="/user/dave"' in html
    assert "I like trains" in html
    assert 'src="/avatar/dave/64.svg"' in html
    assert 'class="relative-time"' in html  # last seen
    assert '<span class="posts-count">1</span>' in html
    assert '<span class="followers-count">1</span>' in html
    assert '<span class="following-count">0</span>' in html
    assert 'action="/unfollow/dave"' in html
    assert CSRF_FIELD.search(html), "the follow form carries a CSRF token"


def test_follow_button_in_popup_works(app, client, auth):
    auth.login("alice")
    html = client.get("/user/bob/popup").get_data(as_text=True)
    assert 'action="/follow/bob"' in html
    token = CSRF_FIELD.search(html).group(1)
    assert client.post("/follow/bob", data={"csrf_token": token}).status_code == 302
    html = client.get("/user/bob/popup").get_data(as_text=True)
    assert 'action="/unfollow/bob"' in html
    assert '<span class="followers-count">1</span>' in html


def test_own_popup_has_no_follow_button(client, auth):
    auth.login("alice")
    html = client.get("/user/alice/popup").get_data(as_text=True)
    assert "user-popup-follow" not in html


def test_popup_of_unknown_user_is_404(client, auth):
    auth.login("alice")
    assert client.get("/user/nobody/popup").status_code == 404


def test_popup_requires_login(client, users):
    response = client.get("/user/bob/popup")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


@pytest.mark.parametrize(("about_me", "escaped"), HOSTILE)
def test_popup_escapes_about_me(client, auth, make_user, about_me, escaped):
    make_user("mallory", about_me=about_me)
    auth.login("alice")
    html = client.get("/user/mallory/popup").get_data(as_text=True)
    assert "<script" not in html and "<img src=x" not in html
    assert escaped in html


@pytest.mark.parametrize(("body", "escaped"), HOSTILE)
def test_timeline_escapes_posts_and_links_popups(client, auth, body, escaped):
    auth.login("bob")
    client.submit("/index", {"post": body})
    auth.logout()
    auth.login("alice")
    html = client.get("/explore").get_data(as_text=True)
    assert body not in html
    assert escaped in html
    assert 'data-user-popup="/user/bob/popup"' in html
