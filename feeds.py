"""Atom feeds: a user's latest posts at /user/<name>/feed.atom, for feed readers (the other
way, beside following, that people read a blog). Public, like the posts in it."""

from datetime import UTC, datetime

from feedgen.feed import FeedGenerator
from flask import Blueprint, request
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from database import db
from mailer import site_link
from models import Post, User

bp = Blueprint("feeds", __name__)

# How many of the newest posts a feed carries: readers poll it and keep what they have seen.
FEED_ENTRIES = 20
# A post's title in a reader's list: its first line, cut to this many characters.
TITLE_LENGTH = 80
# Readers may keep a feed this long before asking again (they ask with If-Modified-Since).
FEED_MAX_AGE = 300
ATOM_TYPE = "application/atom+xml"


def entry_title(body: str) -> str:
    """A post's title in a reader: its first line, shortened with an ellipsis."""
    line = body.strip().splitlines()[0] if body.strip() else ""
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


def as_utc(moment: datetime) -> datetime:
    """A naive UTC datetime from the database as an aware one (feedgen insists)."""
    return moment.replace(tzinfo=UTC)


def atom_document(user: User, posts: list[Post]) -> bytes:
    """The Atom document of `user`'s `posts` (newest first). Every link is built from
    SITE_URL, like a mailed link: a reader keeps them, whatever Host the request named."""
    profile = site_link("people.user", username=user.username)
    feed = FeedGenerator()
    feed.id(profile)
    feed.title(_("Posts by %(username)s", username=user.username))
    feed.author({"name": user.username, "uri": profile})
    feed.link(href=site_link("feeds.user_feed", username=user.username), rel="self", type=ATOM_TYPE)
    feed.link(href=profile, rel="alternate", type="text/html")
    if user.about_me:
        feed.subtitle(user.about_me)
    feed.generator("Microblog")
    newest = posts[0].timestamp if posts else user.last_seen or datetime(1970, 1, 1)
    feed.updated(as_utc(newest))
    # feedgen writes entries in the reverse order of adding them: oldest first in, newest out.
    for post in reversed(posts):
        entry = feed.add_entry()
        permalink = site_link("posts.post", post_id=post.id)
        entry.id(permalink)
        entry.link(href=permalink, rel="alternate", type="text/html")
        entry.title(entry_title(post.body))
        entry.content(post.body, type="text")
        entry.published(as_utc(post.timestamp))
        entry.updated(as_utc(post.timestamp))
    return feed.atom_str(pretty=True)


@bp.route("/user/<username>/feed.atom")
def user_feed(username: str) -> Response:
    """A user's newest posts as an Atom feed; 304 when the reader has the latest already."""
    user = db.first_or_404(User.named(username).where(User.domain.is_(None)))  # ours only
    posts = list(db.session.scalars(user.posts_select().limit(FEED_ENTRIES)))
    response = Response(atom_document(user, posts), mimetype=ATOM_TYPE)
    if posts:
        response.last_modified = as_utc(posts[0].timestamp)
    response.cache_control.public = True
    response.cache_control.max_age = FEED_MAX_AGE
    response.add_etag()
    return response.make_conditional(request)
