"""Mentions, private messages and blocks between our users and a remote account, through the
signed inbox and the worker's handlers (inbound), and through what the worker sends
(outbound, captured where federation_out hands it to the delivery)."""

import json

import pytest
import sqlalchemy as sa

import federation_out
import mentions
from database import db
from follows import Follows
from mailboxes import Mailbox
from models import Message, Post, User
from tests import test_federation
from tests.helpers import actor_document
from tests.test_federation import ANN, SITE, deliver

# The signed inbox and a remote account, ann@remote.example, as test_federation has them.
app_config = test_federation.app_config
web = test_federation.web
remote_keys = test_federation.remote_keys
ann = test_federation.ann
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def create(number, content, **addressing):
    note = {
        "id": f"https://remote.example/notes/{number}",
        "type": "Note",
        "attributedTo": ANN,
        "content": content,
        "published": "2026-12-01T10:00:00Z",
        **addressing,
    }
    return {
        "id": note["id"] + "/activity",
        "type": "Create",
        "actor": ANN,
        "object": note,
        "to": note.get("to", []),
    }


def ann_to(user_id, kind, number):
    """An activity of ann's whose object is one of our users (a Follow, a Block)."""
    return {
        "id": f"https://remote.example/{kind.lower()}s/{number}",
        "type": kind,
        "actor": ANN,
        "object": f"{SITE}/actors/{user_id}",
    }


def mention_of(user_id):
    return {"type": "Mention", "href": f"{SITE}/actors/{user_id}", "name": "@alice@local.example"}


@pytest.fixture
def sent(monkeypatch, immediate):
    """What the worker hands to the delivery (activity, signer, inboxes), tasks run inline."""
    calls = []
    monkeypatch.setattr(
        federation_out,
        "send",
        lambda activity, signer, inboxes: calls.append(
            (json.loads(json.dumps(activity)), signer, sorted(set(inboxes)))
        ),
    )
    return calls


# --- inbound --------------------------------------------------------------------------------


def test_a_direct_note_is_a_private_message_never_a_post(
    web, app, client, auth, users, ann, remote_keys
):
    activity = create(
        1,
        "<p>@alice psst <script>x</script></p>",
        to=[f"{SITE}/actors/{users['alice']}"],
        tag=[mention_of(users["alice"])],
    )
    deliver(web, app, activity, remote_keys)
    deliver(web, app, {**activity, "id": activity["id"] + "-again"}, remote_keys)  # same note
    with app.app_context():
        messages = db.session.scalars(sa.select(Message)).all()
        assert len(messages) == 1
        message = messages[0]
        assert message.sender_id == ann and message.recipient_id == users["alice"]
        assert message.body == "@alice psst" and "<script>" not in message.html
        assert message.ap_id == "https://remote.example/notes/1"
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 0
        assert Mailbox(db.session.get(User, users["alice"])).unread_count() == 1
    auth.login("alice")
    page = client.get("/messages").get_data(as_text=True)
    assert "psst" in page and "ann@remote.example" in page
    assert "psst" not in client.get("/index").get_data(as_text=True)


def test_a_long_direct_note_is_kept_whole(web, app, users, ann, remote_keys):
    text = "word " * 100
    to = [f"{SITE}/actors/{users['bob']}"]
    deliver(web, app, create(2, f"<p>{text}</p>", to=to), remote_keys)
    with app.app_context():
        message = db.session.scalar(sa.select(Message))
        assert len(message.body) == 140 and message.body.endswith("…")
        assert text.strip() in message.html


def test_a_blocked_account_cannot_write(web, app, client, auth, users, ann, remote_keys):
    auth.login("alice")
    client.submit("/block/ann@remote.example")
    to = [f"{SITE}/actors/{users['alice']}"]
    deliver(web, app, create(3, "<p>hello?</p>", to=to), remote_keys)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Message.id))) == 0


def test_a_public_mention_is_kept_and_tells_the_user(
    web, app, client, auth, users, ann, remote_keys
):
    """Nobody here follows ann; her public post mentioning alice is kept for alice."""
    activity = create(
        4,
        "<p>hi @alice</p>",
        to=[PUBLIC],
        cc=[f"{SITE}/actors/{users['alice']}"],
        tag=[mention_of(users["alice"])],
    )
    deliver(web, app, activity, remote_keys)
    with app.app_context():
        alice = db.session.get(User, users["alice"])
        assert mentions.unread_count(alice) == 1
        [post] = db.session.scalars(mentions.mentioning(alice)).all()
        assert post.ap_id == "https://remote.example/notes/4" and post.user_id == ann
        assert db.session.scalar(sa.select(sa.func.count(Message.id))) == 0
    auth.login("alice")
    assert "hi @alice" in client.get("/mentions").get_data(as_text=True)


def test_a_remote_block_ends_follows_both_ways(web, app, users, ann, remote_keys):
    with app.app_context():
        alice, ann_user = db.session.get(User, users["alice"]), db.session.get(User, ann)
        Follows(alice).follow(ann_user)
        Follows(ann_user).follow(alice)
        db.session.commit()
    deliver(web, app, ann_to(users["alice"], "Block", 1), remote_keys)
    with app.app_context():
        alice, ann_user = db.session.get(User, users["alice"]), db.session.get(User, ann)
        assert not Follows(alice).is_following(ann_user)
        assert not Follows(ann_user).is_following(alice)


# --- outbound -------------------------------------------------------------------------------


def test_a_post_mentioning_a_remote_account_is_addressed_and_sent_to_it(
    app, client, auth, users, ann, sent
):
    auth.login("alice")
    client.submit("/index", {"post": "hello @ann@remote.example and @bob"})
    with app.app_context():
        post = db.session.scalar(sa.select(Post))
        assert {user.username for user in mentions.mentioned(post)} == {"ann@remote.example", "bob"}
    # (The followers' delivery has no inbox here: nobody elsewhere follows alice.)
    [(activity, signer, inboxes)] = [call for call in sent if call[2]]
    assert signer == users["alice"] and inboxes == ["https://remote.example/inbox"]
    note = activity["object"]
    assert ANN in note["cc"] and PUBLIC in note["to"]
    assert {"type": "Mention", "href": ANN, "name": "@ann@remote.example"} in note["tag"]
    assert {
        "type": "Mention",
        "href": f"{SITE}/actors/{users['bob']}",
        "name": "@bob@local.example",
    } in note["tag"]


def test_a_message_to_a_remote_account_is_a_direct_note_to_it_alone(
    app, client, auth, users, ann, sent
):
    auth.login("alice")
    response = client.submit("/send_message/ann@remote.example", {"message": "just for you"})
    assert response.status_code == 302
    [(activity, signer, inboxes)] = sent
    assert signer == users["alice"] and inboxes == ["https://remote.example/users/ann/inbox"]
    note = activity["object"]
    assert activity["type"] == "Create" and note["type"] == "Note"
    assert note["to"] == [ANN] and note["cc"] == [] and activity["cc"] == []
    assert PUBLIC not in json.dumps(activity)
    assert "just for you" in note["content"] and note["tag"][0]["href"] == ANN
    assert "just for you" in client.get("/messages/sent").get_data(as_text=True)
    assert "just for you" not in client.get("/index").get_data(as_text=True)


def test_blocking_a_remote_account_sends_block_and_undo(app, client, auth, users, ann, sent):
    auth.login("alice")
    client.submit("/block/ann@remote.example")
    client.submit("/unblock/ann@remote.example")
    [(block, _s, inboxes), (undo, _s2, _i)] = sent
    assert block["type"] == "Block" and block["object"] == ANN
    assert block["actor"] == f"{SITE}/actors/{users['alice']}"
    assert inboxes == ["https://remote.example/users/ann/inbox"]
    assert undo["type"] == "Undo" and undo["object"]["id"] == block["id"]


def test_a_blocked_account_cannot_follow(web, app, client, auth, users, ann, remote_keys, sent):
    auth.login("alice")
    client.submit("/block/ann@remote.example")
    follow = ann_to(users["alice"], "Follow", 9)
    deliver(web, app, follow, remote_keys)
    with app.app_context():
        ann_user, alice = db.session.get(User, ann), db.session.get(User, users["alice"])
        assert not Follows(ann_user).is_following(alice)
    answer = sent[-1][0]
    assert answer["type"] == "Reject" and answer["object"]["id"] == follow["id"]


def test_an_unknown_account_mentioned_is_looked_up_then_sent_the_post(
    app, client, auth, users, remote, sent
):
    app.config.update(FEDERATION_ALLOW_HTTP=True, FEDERATION_ALLOW_PRIVATE=True)
    document = actor_document(remote.base, "zoe")
    remote.json("/users/zoe", document)
    webfinger = {
        "subject": f"acct:zoe@{remote.host}",
        "links": [{"rel": "self", "type": "application/activity+json", "href": document["id"]}],
    }
    remote.json(f"/.well-known/webfinger?resource=acct:zoe@{remote.host}", webfinger)
    auth.login("alice")
    client.submit("/index", {"post": f"hi @zoe@{remote.host}, and @nobody@{remote.host}"})
    [(activity, signer, inboxes)] = [call for call in sent if call[2]]
    assert signer == users["alice"] and inboxes == [f"{remote.base}/inbox"]
    mention = {"type": "Mention", "href": document["id"], "name": f"@zoe@{remote.host}"}
    assert activity["object"]["tag"] == [mention] and document["id"] in activity["object"]["cc"]
