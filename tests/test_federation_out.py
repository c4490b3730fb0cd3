"""What local actions send to other servers: one delivery per server (its shared inbox where
it has one), signed with the acting user's key; nothing at all with federation off."""

import json
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

import account_deletion
import actors
import deliveries
import federation_out
import fedsign
from database import db
from delivery_store import Delivery, OutgoingActivity
from follows import Follows
from models import User
from tests.helpers import actor_document

SITE = "https://local.example"


@pytest.fixture
def app_config():
    return {"SITE_URL": SITE}


class Stored(Sequence):
    """The deliveries stored so far, as (activity, keyId, inbox), read when looked at."""

    def __init__(self, app):
        self.app = app

    def _rows(self):
        with self.app.app_context():
            query = (
                sa.select(OutgoingActivity.body, OutgoingActivity.key_id, Delivery.inbox)
                .join(Delivery, Delivery.activity_id == OutgoingActivity.id)
                .order_by(Delivery.id)
            )
            return [
                (json.loads(body), key_id, inbox)
                for body, key_id, inbox in db.session.execute(query)
            ]

    def __getitem__(self, index):
        return self._rows()[index]

    def __len__(self):
        return len(self._rows())


@pytest.fixture
def sent(app, monkeypatch):
    """Every delivery stored by the engine, as (activity, keyId, inbox); none is sent."""
    monkeypatch.setattr(deliveries, "wake", lambda count=1: None)
    return Stored(app)


def remote_user(name, host, *, shared=True):
    document = actor_document(f"https://{host}", name, fedsign.new_key_pair()[1])
    if not shared:
        del document["endpoints"]
    return actors.store_remote_actor(document)


@pytest.fixture
def followed_alice(app, users):
    """alice, followed by two accounts of one server and one of a server without a shared
    inbox; she follows a fourth."""
    with app.app_context():
        alice = db.session.get(User, users["alice"])
        for user in (
            remote_user("ann", "one.example"),
            remote_user("bea", "one.example"),
            remote_user("cy", "two.example", shared=False),
        ):
            Follows(user).follow(alice)
        Follows(alice).follow(remote_user("dee", "three.example"))
        db.session.commit()
    return users["alice"]


FOLLOWER_INBOXES = ["https://one.example/inbox", "https://two.example/users/cy/inbox"]


def test_new_post_goes_once_to_each_followers_server(app, followed_alice, sent):
    with app.app_context():
        alice = db.session.get(User, followed_alice)
        post = alice.publish("Hello, fediverse")
        db.session.commit()
        federation_out.post_published(post)
    assert sorted(inbox for _, _, inbox in sent) == FOLLOWER_INBOXES
    activity, key_id, _ = sent[0]
    assert key_id == f"{SITE}/actors/{followed_alice}#main-key"
    assert activity["type"] == "Create" and activity["actor"] == f"{SITE}/actors/{followed_alice}"
    assert activity["object"]["content"] == "<p>Hello, fediverse</p>"


def test_posting_from_the_page_sends_it(client, auth, followed_alice, sent):
    auth.login("alice")
    client.submit("/index", {"post": "From the form"})
    assert [activity["type"] for activity, _, _ in sent] == ["Create", "Create"]


def test_deleted_post_sends_delete_and_leaves_a_tombstone(app, followed_alice, sent):
    with app.app_context():
        alice = db.session.get(User, followed_alice)
        post = alice.publish("soon gone")
        db.session.commit()
        post_id = post.id
        alice.delete_post(post_id)
        db.session.commit()
        federation_out.post_deleted(alice, post_id)
        assert actors.tombstone(f"{SITE}/post/{post_id}") is not None
    activity = sent[0][0]
    assert activity["type"] == "Delete"
    assert activity["object"] == {"id": f"{SITE}/post/{post_id}", "type": "Tombstone"}


def test_profile_edit_sends_update_person(client, auth, followed_alice, sent):
    auth.login("alice")
    client.submit("/edit_profile", {"username": "alice", "about_me": "New me"})
    activity = sent[0][0]
    assert activity["type"] == "Update" and activity["object"]["type"] == "Person"
    assert "New me" in activity["object"]["summary"]


def test_update_person_is_built_in_the_worker_too(app, followed_alice, sent):
    # The worker has no request: a new picture is announced from there.
    with app.app_context():
        alice = db.session.get(User, followed_alice)
        alice.about_me = "Hi @bob"
        federation_out.profile_updated(alice)
    person = sent[0][0]["object"]
    assert person["icon"]["url"].startswith(f"{SITE}/avatar/alice/")
    assert f'href="{SITE}/user/bob"' in person["summary"]


def test_account_deletion_sends_delete_of_the_actor_everywhere(app, followed_alice, sent):
    with app.app_context():
        account_deletion.delete_user(db.session.get(User, followed_alice))
    actor = f"{SITE}/actors/{followed_alice}"
    assert {activity["object"] for activity, _, _ in sent} == {actor}
    expected = [*FOLLOWER_INBOXES, "https://three.example/inbox"]
    assert sorted(inbox for _, _, inbox in sent) == sorted(expected)


def test_follow_and_unfollow_of_a_remote_account(client, auth, app, users, sent):
    with app.app_context():
        remote_user("ann", "one.example")
        db.session.commit()
    auth.login("alice")
    response = client.submit("/follow/ann@one.example", follow_redirects=True)
    assert "Requested" in response.text
    follow, key_id, inbox = sent[0]
    assert follow["type"] == "Follow" and follow["object"] == "https://one.example/users/ann"
    assert inbox == "https://one.example/users/ann/inbox"
    response = client.submit("/unfollow/ann@one.example", follow_redirects=True)
    undo = sent[1][0]
    assert undo["type"] == "Undo" and undo["object"]["id"] == follow["id"]
    with app.app_context():
        alice = db.session.get(User, users["alice"])
        ann = User.by_username("ann@one.example")
        assert actors.follow_request(alice, ann) is None
        assert not Follows(alice).is_following(ann)


@pytest.mark.parametrize("app_config", [{"SITE_URL": SITE, "FEDERATION": False}])
def test_nothing_is_sent_with_federation_off(app, followed_alice, sent, app_config):
    with app.app_context():
        alice = db.session.get(User, followed_alice)
        post = alice.publish("Only here")
        db.session.commit()
        federation_out.post_published(post)
        federation_out.profile_updated(alice)
    assert list(sent) == []


def test_mastodon_apps_federate_too(app, client, followed_alice, sent):
    """Following, posting and deleting through the Mastodon client API go out as the pages'
    do: a remote follow is asked for, not recorded as done."""
    from tests.mastodon_support import bearer, make_token

    token = make_token(app, followed_alice)
    with app.app_context():
        ann_id = remote_user("ann", "four.example").id
        db.session.commit()
    client.post(f"/api/v1/accounts/{ann_id}/follow", headers=bearer(token))
    assert sent[-1][0]["type"] == "Follow" and sent[-1][2] == "https://four.example/users/ann/inbox"
    with app.app_context():
        alice, ann = db.session.get(User, followed_alice), db.session.get(User, ann_id)
        assert not Follows(alice).is_following(ann)
        assert actors.follow_request(alice, ann) is not None
    created = client.post("/api/v1/statuses", data={"status": "From an app"}, headers=bearer(token))
    assert [a["type"] for a, _, _ in sent[-2:]] == ["Create", "Create"]
    client.delete(f"/api/v1/statuses/{created.get_json()['id']}", headers=bearer(token))
    assert [a["type"] for a, _, _ in sent[-2:]] == ["Delete", "Delete"]
