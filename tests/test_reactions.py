"""Likes and boosts from other servers: counted on our posts, taken back by Undo, once each."""

import pytest
import sqlalchemy as sa

import federation_in
from database import db
from models import Post, User
from reactions import Reaction
from tests.helpers import add_posts

SITE = "https://blog.example.org"


@pytest.fixture
def app_config():
    return {"SITE_URL": SITE}


@pytest.fixture
def post_id(app, users):
    add_posts(app, users["alice"], ["a post worth liking"])
    with app.app_context():
        return db.session.scalar(sa.select(Post.id))


def apply(app, activity, actor_id):
    """What the worker does with an activity from `actor_id` (the inbox verified it)."""
    with app.app_context():
        federation_in.apply(activity, db.session.get_one(User, actor_id))
        db.session.commit()


def like(number, post_url, actor_id, kind="Like"):
    """A Like (or Announce) by account `actor_id`: local accounts stand in for remote ones."""
    actor = f"{SITE}/actors/{actor_id}"
    return {"id": f"{actor}#{kind}-{number}", "type": kind, "actor": actor, "object": post_url}


def undo(activity):
    return {
        "id": activity["id"] + "/undo",
        "type": "Undo",
        "actor": activity["actor"],
        "object": activity,
    }


def counts(app, post_id):
    with app.app_context():
        post = db.session.get_one(Post, post_id)
        rows = db.session.scalar(sa.select(sa.func.count()).select_from(Reaction))
        return post.like_count, post.announce_count, rows


def test_likes_and_boosts_are_counted_once_per_account(app, users, post_id):
    url = f"{SITE}/post/{post_id}"
    bob, carol = users["bob"], users["carol"]
    apply(app, like(1, url, bob), bob)
    apply(app, like(1, url, bob), bob)  # the same activity again
    apply(app, like(2, url, bob), bob)  # another Like by the same account
    apply(app, like(3, url, carol), carol)
    apply(app, like(4, url, bob, "Announce"), bob)
    assert counts(app, post_id) == (2, 1, 3)


def test_undo_takes_back_only_the_actors_own(app, users, post_id):
    url = f"{SITE}/post/{post_id}"
    bob, carol = users["bob"], users["carol"]
    bobs_like, carols_boost = like(1, url, bob), like(2, url, carol, "Announce")
    apply(app, bobs_like, bob)
    apply(app, carols_boost, carol)
    # carol cannot undo bob's like.
    apply(app, {**undo(bobs_like), "actor": f"{SITE}/actors/{carol}"}, carol)
    assert counts(app, post_id) == (1, 1, 2)
    apply(app, undo(bobs_like), bob)  # Mastodon embeds the Like
    assert counts(app, post_id) == (0, 1, 1)
    apply(app, undo(bobs_like), bob)  # again: nothing more
    assert counts(app, post_id) == (0, 1, 1)


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
    apply(app, like(1, target, users["bob"]), users["bob"])
    assert counts(app, post_id) == (0, 0, 0)


def test_a_blocked_account_is_not_counted(app, client, auth, users, post_id):
    auth.login("alice")
    client.submit("/block/bob")
    apply(app, like(1, f"{SITE}/post/{post_id}", users["bob"]), users["bob"])
    assert counts(app, post_id) == (0, 0, 0)


def test_the_post_card_shows_the_counts(app, client, auth, users, post_id):
    url = f"{SITE}/post/{post_id}"
    for number, who in enumerate(("bob", "carol")):
        apply(app, like(number, url, users[who]), users[who])
    apply(app, like(9, url, users["bob"], "Announce"), users["bob"])
    auth.login("alice")
    page = client.get(f"/post/{post_id}").get_data(as_text=True)
    assert '<div class="post-reactions small text-body-secondary">2 likes · 1 boost</div>' in page
    with app.app_context():
        db.session.execute(sa.delete(Reaction))
        db.session.execute(sa.update(Post).values(like_count=0, announce_count=0))
        db.session.commit()
    assert "post-reactions" not in client.get(f"/post/{post_id}").get_data(as_text=True)
