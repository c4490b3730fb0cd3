"""The page fragments the page script swaps in, and the pages around posts, people and
messages (without a browser: what the server answers)."""

import pytest

from database import db
from mailboxes import Mailbox
from models import Message, User
from tests.helpers import add_posts, follow


def test_profile_header_fragment(client, auth, users):
    auth.login("alice")
    follow(client.application, users["alice"], users["bob"])
    html = client.get("/user/bob/header").get_data(as_text=True)
    assert "<html" not in html
    assert 'id="profile-header"' in html
    assert 'action="/unfollow/bob"' in html
    assert client.get("/user/nobody/header").status_code == 404


def test_newer_messages_are_fragments_and_reading_them_changes_nothing(app, client, auth, users):
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
    # A GET only reads (a link from elsewhere must not clear the badge): the page marks
    # what it has shown with a POST to /messages/read.
    with app.app_context():
        assert Mailbox(db.session.get_one(User, users["alice"])).unread_count() == 3
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


# --- polish ------------------------------------------------------------------------------


def text_of(response) -> str:
    """The page's HTML with runs of white space made one space."""
    return " ".join(response.get_data(as_text=True).split())


def test_counts_say_follower_or_followers_and_link_to_the_lists(app, client, auth, users):
    auth.login("alice")
    follow(app, users["bob"], users["alice"])
    html = text_of(client.get("/user/alice"))
    assert '<span class="followers-count">1</span> follower</a>' in html
    assert 'href="/user/alice/followers"' in html and 'href="/user/alice/following"' in html
    follow(app, users["carol"], users["alice"])
    assert '<span class="followers-count">2</span> followers</a>' in text_of(
        client.get("/user/alice/popup")
    )


def test_profile_tab_title_is_the_username(client, auth):
    auth.login("alice")
    assert "<title>bob - Microblog</title>" in client.get("/user/bob").get_data(as_text=True)


def test_followers_and_following_pages(app, client, auth, users, make_user):
    follow(app, users["bob"], users["alice"])
    follow(app, users["carol"], users["alice"])
    auth.login("alice")
    followers = client.get("/user/alice/followers")
    assert followers.status_code == 200
    html = followers.get_data(as_text=True)
    assert "Followers of alice" in html
    assert html.index(">bob</a>") < html.index(">carol</a>")
    assert "Nobody yet." in client.get("/user/alice/following").get_data(as_text=True)
    assert client.get("/user/nobody/followers").status_code == 404


def test_one_page_lists_have_no_pager_and_past_the_end_says_so(app, client, auth, users):
    add_posts(app, users["alice"], 2)
    auth.login("alice")
    html = client.get("/user/alice").get_data(as_text=True)
    assert "Newer posts" not in html and "Older posts" not in html
    past = client.get("/user/alice?page=99999").get_data(as_text=True)
    assert "No posts yet." not in past
    assert "There is no page 99999" in past and 'href="/user/alice"' in past
    assert "No posts yet." in client.get("/user/bob").get_data(as_text=True)


def test_logout_shows_one_message(client, auth):
    auth.login("alice")
    response = auth.logout()
    assert response.headers["Location"] == "/login"
    html = client.get("/login").get_data(as_text=True)
    assert "You have been logged out." in html
    assert "Please log in" not in html


def test_a_post_has_its_own_page(app, client, auth, users):
    add_posts(app, users["bob"], ["a post worth linking to"])
    auth.login("alice")
    response = client.get("/post/1")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "a post worth linking to" in html
    assert "<title>bob: a post worth linking to - Microblog</title>" in html
    assert 'href="/post/1"' in client.get("/explore").get_data(as_text=True)
    assert client.get("/post/999").status_code == 404


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        (
            "see https://example.com/a?b=1&c=2.",
            'see <a href="https://example.com/a?b=1&amp;c=2" rel="nofollow noopener">'
            "https://example.com/a?b=1&amp;c=2</a>.",
        ),
        ("hi @bob.", 'hi <a class="mention" href="/user/bob">@bob</a>.'),
        ("mail me@example.com", "mail me@example.com"),
        (
            '<script>alert(1)</script> http://x.y/"onmouseover="alert(1)',
            "&lt;script&gt;alert(1)&lt;/script&gt; "
            '<a href="http://x.y/" rel="nofollow noopener">http://x.y/</a>'
            "&#34;onmouseover=&#34;alert(1)",
        ),
        ("javascript:alert(1) ftp://x", "javascript:alert(1) ftp://x"),
    ],
)
def test_links_and_mentions_in_posts(app, client, auth, users, typed, shown):
    add_posts(app, users["alice"], [typed])
    auth.login("alice")
    assert f'<div class="post-body">{shown}</div>' in client.get("/post/1").get_data(as_text=True)


def test_sent_messages_and_the_message_answered(app, client, auth, users):
    auth.login("bob")
    client.submit("/send_message/alice", {"message": "lunch at 1?"})
    sent = client.get("/messages/sent").get_data(as_text=True)
    assert "lunch at 1?" in sent and ">alice</a>" in sent
    auth.logout()
    auth.login("alice")
    assert "No messages sent yet." in client.get("/messages/sent").get_data(as_text=True)
    inbox = client.get("/messages").get_data(as_text=True)
    assert 'href="/send_message/bob?reply_to=1"' in inbox
    reply = client.get("/send_message/bob?reply_to=1").get_data(as_text=True)
    assert "bob wrote" in reply and "lunch at 1?" in reply
    # Someone else's message cannot be quoted by guessing its number.
    auth.logout()
    auth.login("carol")
    assert "lunch at 1?" not in client.get("/send_message/bob?reply_to=1").get_data(as_text=True)


def test_post_and_message_boxes_count_instead_of_cutting(client, auth):
    auth.login("alice")
    html = client.get("/index").get_data(as_text=True)
    assert 'data-maxlength="140"' in html and ' maxlength="140"' not in html
    response = client.submit("/index", {"post": "x" * 141})
    assert response.status_code == 400
    assert "x" * 141 in response.get_data(as_text=True)  # given back whole, to shorten
    assert 'data-maxlength="140"' in client.get("/send_message/bob").get_data(as_text=True)


def test_search_counts_results_and_finds_people(app, client, auth, users, make_user):
    make_user("bobby")
    add_posts(app, users["alice"], ["bob is here", "and bob again", "nothing"])
    auth.login("alice")
    html = text_of(client.get("/search?q=bob"))
    assert "2 posts match." in html
    people = html[html.index("people-found") : html.index("Posts</h2>")]
    assert people.index(">bob</a>") < people.index(">bobby</a>")
    assert "1 post matches." in text_of(client.get("/search?q=again"))
    assert "people-found" not in text_of(client.get("/search?q=zzz"))


def test_search_explains_the_cut_at_the_newest_matches(app, client, auth, users, monkeypatch):
    import search

    monkeypatch.setattr(search, "CANDIDATES", 5)
    add_posts(app, users["alice"], 7, body="word {i}")
    auth.login("alice")
    html = text_of(client.get("/search?q=word"))
    assert "At least 5 posts match; only the newest 5 are searched" in html


def test_favicon(client):
    html = client.get("/login").get_data(as_text=True)
    assert 'rel="icon"' in html
    with client.get("/static/favicon.svg") as response:
        assert response.status_code == 200
