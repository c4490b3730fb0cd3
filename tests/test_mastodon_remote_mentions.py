"""A note from another server whose Mention tag names one of our users is a `mention`
notification in the Mastodon API, as a mention written here is: once, with the post. Both
come from the one record of mentions (mentions.py), which the web's Mentions page reads."""

import pytest

import actors
import federation_in
import fedsign
from database import db
from follows import Follows
from models import User
from tests.helpers import actor_document
from tests.mastodon_support import bearer, make_token

SITE = "https://local.example"
ANN = "https://remote.example/users/ann"


@pytest.fixture
def app_config():
    return {"SITE_URL": SITE}


@pytest.fixture
def ann(app, users):
    """ann@remote.example, followed by bob (so that her public notes are kept here)."""
    with app.app_context():
        document = actor_document("https://remote.example", "ann", fedsign.new_key_pair()[1])
        user = actors.store_remote_actor(document)
        Follows(db.session.get_one(User, users["bob"])).follow(user)
        db.session.commit()
        return user.id


def create_note(number, *mentioned_urls):
    note = {
        "id": f"https://remote.example/notes/{number}",
        "type": "Note",
        "attributedTo": ANN,
        "content": "<p>hello there</p>",
        "published": "2026-12-01T10:00:00Z",
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
        "tag": [{"type": "Mention", "href": url, "name": "@someone"} for url in mentioned_urls],
    }
    return {"id": f"{note['id']}/activity", "type": "Create", "actor": ANN, "object": note}


def apply(app, ann, activity):
    """The worker's step for a verified activity (the signature checks are tested apart)."""
    with app.app_context():
        federation_in.apply(activity, db.session.get_one(User, ann))
        db.session.commit()


def mentions_of(client, token):
    response = client.get("/api/v1/notifications", headers=bearer(token))
    assert response.status_code == 200
    return [item for item in response.json if item["type"] == "mention"]


def test_a_remote_mention_is_a_mastodon_mention(app, client, users, ann):
    alice, carol = make_token(app, users["alice"]), make_token(app, users["carol"])
    activity = create_note(
        1,
        f"{SITE}/actors/{users['alice']}",
        f"{SITE}/user/alice",  # the same account by its page: one notification
        f"{SITE}/actors/99999999999999999999999",  # no such row, and too big for one
        "https://elsewhere.example/users/zed",
    )
    apply(app, ann, activity)
    apply(app, ann, activity)  # delivered twice: still one

    [mention] = mentions_of(client, alice)
    assert mention["account"]["acct"] == "ann@remote.example"
    assert mention["status"]["uri"] == "https://remote.example/notes/1"
    assert "hello there" in mention["status"]["content"]
    assert mentions_of(client, carol) == []


def test_a_local_mention_takes_the_same_path(app, client, users):
    alice = make_token(app, users["alice"])
    response = client.post(
        "/api/v1/statuses",
        headers=bearer(make_token(app, users["bob"])),
        json={"status": "hi @alice"},
    )
    assert response.status_code == 200
    [mention] = mentions_of(client, alice)
    assert mention["account"]["acct"] == "bob" and mention["status"]["id"] == response.json["id"]


def test_a_disabled_user_is_not_mentioned(app, client, users, ann):
    token = make_token(app, users["alice"])
    with app.app_context():
        db.session.get_one(User, users["alice"]).disabled = True
        db.session.commit()
    apply(app, ann, create_note(2, f"{SITE}/actors/{users['alice']}"))
    with app.app_context():
        db.session.get_one(User, users["alice"]).disabled = False
        db.session.commit()
    assert mentions_of(client, token) == []
