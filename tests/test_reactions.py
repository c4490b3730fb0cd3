"""Likes and boosts from other servers: counted on our posts, taken back by Undo, once each."""

import pytest
import sqlalchemy as sa

import federation_social
from database import db
from models import Post, User
from reactions import Reaction
from tests.helpers import add_posts

SITE = "https://blog.example.org"
REMOTE = "https://remote.example/users/zed"


@pytest.fixture
def app_config():
    return {"SITE_URL": SITE}


@pytest.fixture
def post_id(app, users):
    add_posts(app, users["alice"], ["a post worth liking"])
    with app.app_context():
        return db.session.scalar(sa.select(Post.id))


def apply(app, handler, activity, actor_id):
    with app.app_context():
        handler(activity, db.session.get_one(User, actor_id))


def like(number, post_url, kind="Like"):
    return {
        "id": f"{REMOTE}#{kind.lower()}-{number}",
        "type": kind,
        "actor": REMOTE,
        "object": post_url,
    }


def counts(app, post_id):
    with app.app_context():
        post = db.session.get_one(Post, post_id)
        rows = db.session.scalar(sa.select(sa.func.count()).select_from(Reaction))
        return post.like_count, post.announce_count, rows


def test_likes_and_boosts_are_counted_once_per_account(app, users, post_id):
    url = f"{SITE}/post/{post_id}"
    on = federation_social.on_reaction
    apply(app, on, like(1, url), users["bob"])
    apply(app, on, like(1, url), users["bob"])  # the same activity again
    apply(app, on, like(2, url), users["bob"])  # another Like by the same account
    apply(app, on, like(3, url), users["carol"])
    apply(app, on, like(4, url, "Announce"), users["bob"])
    assert counts(app, post_id) == (2, 1, 3)


def test_undo_takes_back_only_the_actors_own(app, users, post_id):
    url = f"{SITE}/post/{post_id}"
    apply(app, federation_social.on_reaction, like(1, url), users["bob"])
    apply(app, federation_social.on_reaction, like(2, url, "Announce"), users["carol"])
    undo = federation_social.on_undo_reaction
    # carol cannot undo bob's like, by its id or by naming the post.
    apply(app, undo, {"type": "Undo", "object": like(1, url)}, users["carol"])
    assert counts(app, post_id) == (1, 1, 2)
    # Mastodon embeds the Like; others name it by id only.
    apply(app, undo, {"type": "Undo", "object": like(1, url)}, users["bob"])
    apply(app, undo, {"type": "Undo", "object": like(2, url, "Announce")["id"]}, users["carol"])
    assert counts(app, post_id) == (0, 0, 0)
    apply(app, undo, {"type": "Undo", "object": like(1, url)}, users["bob"])  # again: nothing
    assert counts(app, post_id) == (0, 0, 0)


@pytest.mark.parametrize(
    "target",
    [
        "https://elsewhere.example/post/1",
        f"{SITE}/post/999",
        f"{SITE}/post/abc",
        f"{SITE}/post/" + "9" * 30,
        f"{SITE}/post/١",
        None,
        {"no": "id"},
        ["a", "list"],
        12,
    ],
)
def test_reactions_to_anything_else_are_ignored(app, users, post_id, target):
    apply(app, federation_social.on_reaction, like(1, target), users["bob"])
    assert counts(app, post_id) == (0, 0, 0)


def test_a_blocked_account_is_not_counted(app, client, auth, users, post_id):
    auth.login("alice")
    client.submit("/block/bob")
    apply(app, federation_social.on_reaction, like(1, f"{SITE}/post/{post_id}"), users["bob"])
    assert counts(app, post_id) == (0, 0, 0)


def test_the_post_card_shows_the_counts(app, client, auth, users, post_id):
    url = f"{SITE}/post/{post_id}"
    for number, who in enumerate(("bob", "carol")):
        apply(app, federation_social.on_reaction, like(number, url), users[who])
    apply(app, federation_social.on_reaction, like(9, url, "Announce"), users["bob"])
    auth.login("alice")
    page = client.get(f"/post/{post_id}").get_data(as_text=True)
    assert '<div class="post-reactions small text-body-secondary">2 likes · 1 boost</div>' in page
    with app.app_context():
        db.session.execute(sa.delete(Reaction))
        db.session.execute(sa.update(Post).values(like_count=0, announce_count=0))
        db.session.commit()
    assert "post-reactions" not in client.get(f"/post/{post_id}").get_data(as_text=True)
