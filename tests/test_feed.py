"""A user's Atom feed, read by feedparser (an independent parser, as a feed reader would)."""

import re
from datetime import datetime

import feedparser
import pytest

from feeds import FEED_ENTRIES, TITLE_LENGTH
from tests.helpers import add_posts

SITE = "https://blog.example.org"


@pytest.fixture
def app_config():
    return {"SITE_URL": SITE}


def parsed(response):
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    feed = feedparser.parse(response.data)
    assert not feed.bozo, feed.get("bozo_exception")
    return feed


def test_feed_is_valid_atom_with_the_newest_posts(app, client, users):
    bodies = [f"post number {i}" for i in range(FEED_ENTRIES + 5)]
    add_posts(app, users["alice"], bodies)
    feed = parsed(client.get("/user/alice/feed.atom"))

    assert feed.version == "atom10"
    assert feed.feed.id == f"{SITE}/user/alice"
    assert feed.feed.title == "Posts by alice"
    assert feed.feed.author_detail.name == "alice"
    links = {link.rel: link for link in feed.feed.links}
    assert links["self"].href == f"{SITE}/user/alice/feed.atom"
    assert links["self"].type == "application/atom+xml"
    assert links["alternate"].href == f"{SITE}/user/alice"
    # The newest first, and no more than FEED_ENTRIES.
    assert [entry.title for entry in feed.entries] == bodies[::-1][:FEED_ENTRIES]
    newest = feed.entries[0]
    assert re.fullmatch(rf"{SITE}/post/[0-9]+", newest.id)
    assert newest.link == newest.id
    assert newest.content[0].value == bodies[-1]
    assert newest.published_parsed and newest.updated_parsed
    assert feed.feed.updated_parsed == newest.updated_parsed
    assert len({entry.id for entry in feed.entries}) == FEED_ENTRIES


def test_markup_in_posts_is_text_not_html(app, client, users):
    body = 'hi <script>alert("x")</script> & <b>bold</b>'
    add_posts(app, users["alice"], [body])
    response = client.get("/user/alice/feed.atom")
    assert b"<script>" not in response.data and b"<b>" not in response.data
    entry = parsed(response).entries[0]
    assert entry.content[0].type == "text/plain"
    assert entry.content[0].value == body


def test_long_first_line_makes_a_short_title(app, client, users):
    body = "word " * 30 + "\nsecond line"
    add_posts(app, users["alice"], [body.strip()])
    title = parsed(client.get("/user/alice/feed.atom")).entries[0].title
    assert len(title) <= TITLE_LENGTH and title.endswith("…")
    assert "second line" not in title


def test_feed_without_posts_and_for_nobody(client, users):
    feed = parsed(client.get("/user/bob/feed.atom"))
    assert feed.entries == [] and feed.feed.updated_parsed
    assert client.get("/user/nobody/feed.atom").status_code == 404


def test_feed_needs_no_sign_in_and_answers_304_when_unchanged(app, client, users):
    add_posts(app, users["alice"], ["hello"])
    first = client.get("/user/alice/feed.atom")
    assert first.status_code == 200 and first.headers["ETag"]
    again = client.get("/user/alice/feed.atom", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    since = client.get(
        "/user/alice/feed.atom", headers={"If-Modified-Since": first.headers["Last-Modified"]}
    )
    assert since.status_code == 304
    add_posts(app, users["alice"], ["newer"], start=datetime(2100, 1, 1))
    changed = client.get("/user/alice/feed.atom", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and parsed(changed).entries[0].title == "newer"


def test_profile_links_the_feed(client, auth):
    auth.login()
    html = client.get("/user/bob").get_data(as_text=True)
    assert (
        '<link rel="alternate" type="application/atom+xml" title="Posts by bob"\n'
        '      href="/user/bob/feed.atom">' in html
    )
    assert 'href="/user/bob/feed.atom" class="feed-link"' in html
