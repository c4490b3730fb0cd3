"""Federation's endpoints: WebFinger, host-meta, NodeInfo, actors with content negotiation,
collections, notes and tombstones, authorized fetch, FEDERATION=off; and the inbox: every
POST verified before anything (401s), bad input refused with a 4xx, each activity applied
once, and what applying does."""

import datetime
import json
from email.utils import format_datetime

import pytest
import sqlalchemy as sa

import actors
import federation_in
import fedsign
import inbound
from blocks import DomainBlock
from database import db
from follows import Follows
from models import Post, User
from tests.helpers import actor_document
from timeline import Timeline

SITE = "https://local.example"
AP = "application/activity+json"
LD = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'


@pytest.fixture
def app_config():
    return {"SITE_URL": SITE}


@pytest.fixture
def web(client):
    """The client, speaking to the site by its public name."""

    class Web:
        def get(self, path, **kwargs):
            return client.get(path, base_url=SITE, **kwargs)

        def post(self, path, **kwargs):
            return client.post(path, base_url=SITE, **kwargs)

    return Web()


@pytest.fixture
def remote_keys():
    return fedsign.new_key_pair()


@pytest.fixture
def ann(app, remote_keys):
    """A remote account, ann@remote.example, known here with its key."""
    with app.app_context():
        document = actor_document("https://remote.example", "ann", remote_keys[1])
        user = actors.store_remote_actor(document)
        db.session.commit()
        return user.id


ANN = "https://remote.example/users/ann"
ANN_KEY = ANN + "#main-key"


def signed_post(web, path, activity, keys, *, key_id=ANN_KEY, body=None, headers=None):
    body = body if body is not None else json.dumps(activity).encode()
    signed = fedsign.sign_request(
        "POST", SITE + path, key_id=key_id, private_pem=keys[0], body=body
    )
    signed.update(headers or {})
    return web.post(path, data=body, headers=signed)


def follow_activity(user_id, number=1):
    return {
        "id": f"https://remote.example/follows/{number}",
        "type": "Follow",
        "actor": ANN,
        "object": f"{SITE}/actors/{user_id}",
    }


def stored_activities():
    return db.session.scalars(sa.select(federation_in.InboxActivity)).all()


def apply_all(app):
    """Run the worker's task for every stored activity, as the consumer would."""
    with app.app_context():
        ids = [row.id for row in stored_activities()]
        for row_id in ids:
            inbound.apply_inbox_activity.call_local(row_id)


# --- discovery ------------------------------------------------------------------------


def test_webfinger_finds_a_local_user(web, users):
    response = web.get("/.well-known/webfinger?resource=acct:alice@local.example")
    assert response.status_code == 200
    assert response.mimetype == "application/jrd+json"
    document = response.get_json()
    assert document["subject"] == "acct:alice@local.example"
    self_link = next(link for link in document["links"] if link["rel"] == "self")
    assert self_link == {"rel": "self", "type": AP, "href": f"{SITE}/actors/{users['alice']}"}


@pytest.mark.parametrize(
    "resource",
    ["acct:alice@elsewhere.example", "acct:nobody@local.example", "", "acct:", "alice"],
)
def test_webfinger_knows_only_local_users_of_this_host(web, users, resource):
    assert web.get(f"/.well-known/webfinger?resource={resource}").status_code == 404


def test_webfinger_keeps_the_port(app, client, users):
    app.config["SITE_URL"] = "https://local.example:8443"
    response = client.get(
        "/.well-known/webfinger?resource=acct:alice@local.example:8443",
        base_url="https://local.example:8443",
    )
    assert response.get_json()["subject"] == "acct:alice@local.example:8443"


def test_host_meta_points_at_webfinger(web):
    response = web.get("/.well-known/host-meta")
    assert response.mimetype == "application/xrd+xml"
    assert f'template="{SITE}/.well-known/webfinger?resource={{uri}}"' in response.text


def test_nodeinfo(web, app, users, ann):
    with app.app_context():
        db.session.add(Post(body="hi", user_id=users["alice"]))
        db.session.add(Post(body="remote", user_id=ann, ap_id="https://remote.example/1"))
        db.session.commit()
    links = web.get("/.well-known/nodeinfo").get_json()["links"]
    assert links[0]["href"] == f"{SITE}/nodeinfo/2.1"
    document = web.get("/nodeinfo/2.1").get_json()
    assert document["software"]["name"] == "microblog"
    assert document["protocols"] == ["activitypub"]
    assert document["usage"] == {"users": {"total": 3}, "localPosts": 1}
    assert document["openRegistrations"] is True
    app.config["MICROBLOG_REGISTRATION"] = "closed"
    assert web.get("/nodeinfo/2.1").get_json()["openRegistrations"] is False


# --- actors, collections, notes -------------------------------------------------------


def test_actor_document(web, users):
    response = web.get(f"/actors/{users['alice']}")
    assert response.status_code == 200 and response.mimetype == AP
    actor = response.get_json()
    base = f"{SITE}/actors/{users['alice']}"
    assert actor["id"] == base and actor["type"] == "Person"
    assert actor["preferredUsername"] == "alice"
    assert actor["inbox"] == base + "/inbox" and actor["outbox"] == base + "/outbox"
    assert actor["followers"] == base + "/followers"
    assert actor["endpoints"]["sharedInbox"] == SITE + "/inbox"
    assert actor["url"] == SITE + "/user/alice"
    assert actor["publicKey"]["id"] == base + "#main-key"
    assert actor["publicKey"]["owner"] == base
    assert actor["publicKey"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert actor["icon"]["url"].startswith(SITE + "/")
    # The key pair is made once: the same key the second time.
    again = web.get(f"/actors/{users['alice']}").get_json()
    assert again["publicKey"] == actor["publicKey"]


@pytest.mark.parametrize("accept", [AP, LD])
def test_profile_url_answers_activity_json(web, users, accept):
    response = web.get("/user/alice", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.get_json()["id"] == f"{SITE}/actors/{users['alice']}"


def test_browsers_get_the_page(web, users):
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = web.get("/user/alice", headers={"Accept": accept})
    assert response.status_code == 302 and "/login" in response.location


def test_instance_actor(web):
    actor = web.get("/actor").get_json()
    assert actor["id"] == SITE + "/actor" and actor["type"] == "Application"
    assert actor["publicKey"]["id"] == SITE + "/actor#main-key"


def test_outbox_pages(web, app, users):
    with app.app_context():
        for number in range(25):
            db.session.add(Post(body=f"post {number}", user_id=users["alice"]))
        db.session.commit()
    base = f"{SITE}/actors/{users['alice']}/outbox"
    collection = web.get(f"/actors/{users['alice']}/outbox").get_json()
    assert collection["type"] == "OrderedCollection" and collection["totalItems"] == 25
    first = web.get(f"/actors/{users['alice']}/outbox?page=1").get_json()
    assert first["type"] == "OrderedCollectionPage" and len(first["orderedItems"]) == 20
    assert first["next"] == base + "?page=2"
    create = first["orderedItems"][0]
    assert create["type"] == "Create" and create["object"]["type"] == "Note"
    second = web.get(f"/actors/{users['alice']}/outbox?page=2").get_json()
    assert len(second["orderedItems"]) == 5 and "next" not in second


@pytest.mark.parametrize("page", ["0", "-1", "x", "99999999999999999999"])
def test_bad_page_is_a_400(web, users, page):
    assert web.get(f"/actors/{users['alice']}/outbox?page={page}").status_code == 400


def test_followers_list_remote_and_local_actors(web, app, users, ann):
    with app.app_context():
        alice = db.session.get(User, users["alice"])
        Follows(db.session.get(User, ann)).follow(alice)
        Follows(db.session.get(User, users["bob"])).follow(alice)
        db.session.commit()
    page = web.get(f"/actors/{users['alice']}/followers?page=1").get_json()
    assert sorted(page["orderedItems"]) == sorted([ANN, f"{SITE}/actors/{users['bob']}"])
    assert page["totalItems"] == 2


def test_note_and_tombstone(web, app, client, users, auth):
    with app.app_context():
        post = Post(body="Hello https://example.org\n\nand more", user_id=users["alice"])
        db.session.add(post)
        db.session.commit()
        post_id = post.id
    note = web.get(f"/post/{post_id}", headers={"Accept": AP}).get_json()
    assert note["id"] == f"{SITE}/post/{post_id}" and note["type"] == "Note"
    assert note["attributedTo"] == f"{SITE}/actors/{users['alice']}"
    assert "https://www.w3.org/ns/activitystreams#Public" in note["to"]
    assert note["content"].startswith('<p>Hello <a href="https://example.org"')
    auth.login("alice")
    client.submit(f"/post/{post_id}/delete")
    gone = web.get(f"/post/{post_id}", headers={"Accept": AP})
    assert gone.status_code == 410
    assert gone.get_json()["type"] == "Tombstone"
    assert web.get("/post/999999", headers={"Accept": AP}).status_code == 404


def test_authorized_fetch_needs_a_signature(web, app, users, ann, remote_keys):
    app.config["FEDERATION_AUTHORIZED_FETCH"] = True
    path = f"/actors/{users['alice']}"
    assert web.get(path).status_code == 401
    assert web.get("/user/alice", headers={"Accept": AP}).status_code == 401
    headers = fedsign.sign_request("GET", SITE + path, key_id=ANN_KEY, private_pem=remote_keys[0])
    assert web.get(path, headers=headers).status_code == 200
    # The instance actor and discovery stay open: others need them to check us.
    assert web.get("/actor").status_code == 200
    assert web.get("/.well-known/nodeinfo").status_code == 200


@pytest.fixture
def federation_off():
    return {"SITE_URL": SITE, "FEDERATION": False}


@pytest.mark.parametrize("app_config", [{"SITE_URL": SITE, "FEDERATION": False}])
def test_federation_off_has_no_endpoints(web, users, app_config):
    for path in (
        "/.well-known/webfinger?resource=acct:alice@local.example",
        "/.well-known/nodeinfo",
        f"/actors/{users['alice']}",
        "/actor",
    ):
        assert web.get(path).status_code == 404, path
    assert web.post("/inbox", data=b"{}").status_code == 404
    assert web.get("/user/alice", headers={"Accept": AP}).status_code == 302


@pytest.mark.parametrize("app_config", [{"SITE_URL": "http://127.0.0.1:5000"}])
def test_federation_is_off_by_default_over_http(web, app, app_config):
    assert app.config["FEDERATION"] is False


# --- the inbox: verification ----------------------------------------------------------


def test_follow_is_verified_stored_and_applied_once(web, app, users, ann, remote_keys):
    activity = follow_activity(users["alice"])
    assert signed_post(web, "/inbox", activity, remote_keys).status_code == 202
    # The same activity again (a retry, a replay): stored and applied once.
    assert signed_post(web, "/inbox", activity, remote_keys).status_code == 202
    with app.app_context():
        assert len(stored_activities()) == 1
    apply_all(app)
    apply_all(app)
    with app.app_context():
        alice = db.session.get(User, users["alice"])
        assert Follows(db.session.get(User, ann)).is_following(alice)
        assert Follows(alice).followers_count() == 1
        assert stored_activities()[0].state == "applied"


def test_rfc9421_signed_post_is_taken(web, app, users, ann, remote_keys):
    """Signed by http-message-signatures as Mastodon 4.5 signs: RFC 9421 with a
    Content-Digest, rsa-v1_5-sha256."""
    import http_message_signatures as hms

    class Request:
        method, url = "POST", SITE + "/inbox"

        def __init__(self):
            self.headers = {"Host": "local.example", "Content-Type": AP}

    body = json.dumps(follow_activity(users["alice"])).encode()
    request = Request()
    resolver = hms.MappingKeyResolver(
        public_keys={}, private_keys={ANN_KEY: remote_keys[0].encode()}
    )
    signer = hms.HTTPMessageSigner(
        signature_algorithm=hms.algorithms.RSA_V1_5_SHA256, key_resolver=resolver
    )
    signer.sign(
        request, key_id=ANN_KEY, covered_component_ids=("@method", "@target-uri"), body=body
    )
    assert web.post("/inbox", data=body, headers=request.headers).status_code == 202
    tampered = body.replace(b"follows/1", b"follows/2")
    assert web.post("/inbox", data=tampered, headers=request.headers).status_code == 401
    with app.app_context():
        assert len(stored_activities()) == 1


def test_personal_inbox_takes_activities_too(web, app, users, ann, remote_keys):
    path = f"/actors/{users['alice']}/inbox"
    assert signed_post(web, path, follow_activity(users["alice"]), remote_keys).status_code == 202
    assert (
        signed_post(
            web, "/user/alice/inbox", follow_activity(users["alice"], 2), remote_keys
        ).status_code
        == 202
    )


def unchanged(app):
    with app.app_context():
        return stored_activities() == []


def test_unsigned_post_is_401(web, app, users, ann):
    body = json.dumps(follow_activity(users["alice"])).encode()
    response = web.post("/inbox", data=body, headers={"Content-Type": AP})
    assert response.status_code == 401
    assert unchanged(app)


def test_wrong_signature_is_401(web, app, users, ann):
    other = fedsign.new_key_pair()
    assert signed_post(web, "/inbox", follow_activity(users["alice"]), other).status_code == 401
    assert unchanged(app)


def test_digest_mismatch_is_401(web, app, users, ann, remote_keys):
    activity = follow_activity(users["alice"])
    body = json.dumps(activity).encode()
    signed = fedsign.sign_request(
        "POST", SITE + "/inbox", key_id=ANN_KEY, private_pem=remote_keys[0], body=body
    )
    tampered = body.replace(b"follows/1", b"follows/2")
    assert web.post("/inbox", data=tampered, headers=signed).status_code == 401
    assert unchanged(app)


def test_old_date_is_401(web, app, users, ann, remote_keys, monkeypatch):
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    monkeypatch.setattr(fedsign, "formatdate", lambda usegmt: format_datetime(old, usegmt=True))
    assert (
        signed_post(web, "/inbox", follow_activity(users["alice"]), remote_keys).status_code == 401
    )
    assert unchanged(app)


def test_key_of_another_actor_is_401(web, app, users, ann, remote_keys):
    with app.app_context():
        bea_keys = fedsign.new_key_pair()
        actors.store_remote_actor(actor_document("https://remote.example", "bea", bea_keys[1]))
        db.session.commit()
    # bea signs an activity that claims to be ann's.
    key = "https://remote.example/users/bea#main-key"
    response = signed_post(web, "/inbox", follow_activity(users["alice"]), bea_keys, key_id=key)
    assert response.status_code == 401
    assert unchanged(app)


def test_request_for_another_host_is_401(web, app, users, ann, remote_keys):
    activity = follow_activity(users["alice"])
    body = json.dumps(activity).encode()
    signed = fedsign.sign_request(
        "POST",
        "https://elsewhere.example/inbox",
        key_id=ANN_KEY,
        private_pem=remote_keys[0],
        body=body,
    )
    assert web.post("/inbox", data=body, headers=signed).status_code == 401
    assert unchanged(app)


@pytest.mark.parametrize("blocked", ["remote.example", "example"])
def test_blocked_domain_is_403_before_any_fetch(web, app, users, remote_keys, monkeypatch, blocked):
    with app.app_context():  # an admin blocked the domain (or one it is under)
        db.session.add(DomainBlock(domain=blocked))
        db.session.commit()
    fetched = []
    monkeypatch.setattr(federation_in, "fetch_key_owner", lambda key: fetched.append(key))
    response = signed_post(web, "/inbox", follow_activity(users["alice"]), remote_keys)
    assert response.status_code == 403
    assert fetched == [] and unchanged(app)


@pytest.mark.parametrize(
    "body, status",
    [
        (b"", 400),
        (b"\xff\xfe binary", 400),
        (b"[1, 2]", 400),
        (b"[" * 50000 + b"]" * 50000, 400),
        (b'{"a": ' + b"[" * 30 + b"1" + b"]" * 30 + b"}", 400),
        (json.dumps({"type": "Follow", "actor": ANN}).encode(), 400),
        (json.dumps({"id": 5, "type": "Follow", "actor": ANN}).encode(), 400),
        (
            json.dumps(
                {"id": "https://remote.example/x", "type": ["Follow"], "actor": ANN}
            ).encode(),
            400,
        ),
        (json.dumps({"id": "https://remote.example/x", "type": "Follow"}).encode(), 400),
        (
            json.dumps({"id": "https://other.example/x", "type": "Follow", "actor": ANN}).encode(),
            400,
        ),
        (
            json.dumps(
                {
                    "id": "https://remote.example/x",
                    "type": "Follow",
                    "actor": "https://remote.example/users/bob",
                }
            ).encode(),
            401,
        ),
        (b"{" + b'"x":"' + b"a" * 300_000 + b'"}', 413),
        (
            b'{"id": "https://remote.example/\\ud800", "type": "Follow", "actor": "'
            + ANN.encode()
            + b'"}',
            400,
        ),
    ],
)
def test_bad_bodies_are_refused(web, app, users, ann, remote_keys, body, status):
    assert signed_post(web, "/inbox", None, remote_keys, body=body).status_code == status
    assert unchanged(app)


def test_unknown_key_is_fetched_and_a_rotated_key_refetched(web, app, users, remote, monkeypatch):
    app.config.update(FEDERATION_ALLOW_HTTP=True, FEDERATION_ALLOW_PRIVATE=True)
    old_keys, new_keys = fedsign.new_key_pair(), fedsign.new_key_pair()
    document = actor_document(remote.base, "cy", old_keys[1])
    remote.json("/users/cy", document)
    key_id = document["publicKey"]["id"]
    activity = {
        **follow_activity(users["alice"]),
        "actor": document["id"],
        "id": remote.base + "/f/1",
    }
    assert signed_post(web, "/inbox", activity, old_keys, key_id=key_id).status_code == 202
    assert len(remote.requests) == 1  # the key was fetched, signed by our instance actor
    assert "Signature" in remote.requests[0][2]
    # The actor rotates its key: the cached one fails, so it is fetched again, once.
    remote.json("/users/cy", actor_document(remote.base, "cy", new_keys[1]))
    activity["id"] = remote.base + "/f/2"
    assert signed_post(web, "/inbox", activity, new_keys, key_id=key_id).status_code == 202
    assert len(remote.requests) == 2
    # A wrong key still fails after that one fetch.
    activity["id"] = remote.base + "/f/3"
    assert signed_post(web, "/inbox", activity, old_keys, key_id=key_id).status_code == 401
    assert len(remote.requests) == 3


def test_a_known_key_is_kept_and_a_rotated_one_read_again(
    web, app, users, ann, remote_keys, monkeypatch
):
    first = {**follow_activity(users["alice"]), "id": "https://remote.example/follows/k1"}
    assert signed_post(web, "/inbox", first, remote_keys).status_code == 202
    # Kept in memory: the next request from that key asks the database nothing about it.
    lookups = []
    by_key_id = actors.remote_by_key_id
    monkeypatch.setattr(actors, "remote_by_key_id", lambda k: lookups.append(k) or by_key_id(k))
    second = {**first, "id": "https://remote.example/follows/k2"}
    assert signed_post(web, "/inbox", second, remote_keys).status_code == 202
    assert lookups == []
    # Rotated, as an Update(Person) applied by the worker stores it: the kept key fails, the
    # stored one is read and verifies (remote.example cannot be reached: nothing is fetched).
    new_keys = fedsign.new_key_pair()
    with app.app_context():
        actors.store_remote_actor(actor_document("https://remote.example", "ann", new_keys[1]))
        db.session.commit()
    third = {**first, "id": "https://remote.example/follows/k3"}
    assert signed_post(web, "/inbox", third, new_keys).status_code == 202
    assert ANN_KEY in lookups
    # The old key no longer verifies, kept or not.
    fourth = {**first, "id": "https://remote.example/follows/k4"}
    assert signed_post(web, "/inbox", fourth, remote_keys).status_code == 401


# --- applying ---------------------------------------------------------------------------


def note(number, **extra):
    return {
        "id": f"https://remote.example/notes/{number}",
        "type": "Note",
        "attributedTo": ANN,
        "content": f"<p>Note {number} <script>x</script><a href='https://a.example'>link</a></p>",
        "published": "2026-12-01T10:00:00Z",
        "to": ["https://www.w3.org/ns/activitystreams#Public"],
        **extra,
    }


def deliver(web, app, activity, keys):
    assert signed_post(web, "/inbox", activity, keys).status_code == 202
    apply_all(app)


def ann_does(web, app, keys, kind, thing, number=1):
    """ann's server delivers a `kind` activity of `thing`, and the worker applies it."""
    activity = {"id": f"https://remote.example/{kind}/{number}", "type": kind, "actor": ANN}
    deliver(web, app, {**activity, "object": thing}, keys)


@pytest.fixture
def alice_follows_ann(app, users, ann):
    with app.app_context():
        Follows(db.session.get(User, users["alice"])).follow(db.session.get(User, ann))
        db.session.commit()


def test_notes_of_followed_accounts_enter_change_and_leave_the_timeline(
    web, app, users, alice_follows_ann, remote_keys
):
    ann_does(web, app, remote_keys, "Create", note(1))
    with app.app_context():
        alice = db.session.get(User, users["alice"])
        timeline = db.session.scalars(Timeline(alice).posts()).all()
        assert [post.ap_id for post in timeline] == ["https://remote.example/notes/1"]
        assert "<script>" not in timeline[0].html and 'rel="nofollow noopener"' in timeline[0].html
        assert timeline[0].body == "Note 1 link"
    ann_does(web, app, remote_keys, "Update", note(1, content="<p>Edited</p>"))
    with app.app_context():
        stored = db.session.scalar(sa.select(Post).where(Post.ap_id == note(1)["id"]))
        assert stored.body == "Edited"
    ann_does(web, app, remote_keys, "Delete", {"id": note(1)["id"], "type": "Tombstone"})
    with app.app_context():
        assert db.session.scalar(sa.select(Post).where(Post.ap_id == note(1)["id"])) is None


def test_notes_of_accounts_nobody_follows_are_not_kept(web, app, users, ann, remote_keys):
    ann_does(web, app, remote_keys, "Create", note(2))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 0


@pytest.mark.parametrize(
    "change",
    [
        {"attributedTo": "https://remote.example/users/bob"},  # another actor of its server
        {"attributedTo": "https://other.example/users/ann"},  # an actor elsewhere
        {"id": "https://other.example/notes/3"},  # a note that lives elsewhere
    ],
)
def test_note_by_someone_else_is_refused(web, app, alice_follows_ann, remote_keys, change):
    forged = {**note(3), **change}
    activity = {"id": "https://remote.example/Create/1", "type": "Create", "actor": ANN}
    answer = signed_post(web, "/inbox", {**activity, "object": forged}, remote_keys)
    assert answer.status_code == 400
    apply_all(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 0
        assert db.session.scalar(sa.select(sa.func.count(federation_in.InboxActivity.id))) == 0


def test_accept_and_undo_of_follows(web, app, users, ann, remote_keys):
    import federation_out

    with app.app_context():
        alice, ann_user = db.session.get(User, users["alice"]), db.session.get(User, ann)
        federation_out.follow_remote(alice, ann_user)
        request_row = actors.follow_request(alice, ann_user)
        assert request_row is not None and not Follows(alice).is_following(ann_user)
        follow_id = request_row.activity_id
    accept = {
        "id": "https://remote.example/a/1",
        "type": "Accept",
        "actor": ANN,
        "object": {
            "id": follow_id,
            "type": "Follow",
            "actor": f"{SITE}/actors/{users['alice']}",
            "object": ANN,
        },
    }
    deliver(web, app, accept, remote_keys)
    with app.app_context():
        alice, ann_user = db.session.get(User, users["alice"]), db.session.get(User, ann)
        assert (
            Follows(alice).is_following(ann_user) and actors.follow_request(alice, ann_user) is None
        )
    # ann follows bob, then takes it back.
    follow = follow_activity(users["bob"], 7)
    deliver(web, app, follow, remote_keys)
    undo = {"id": "https://remote.example/undo/7", "type": "Undo", "actor": ANN, "object": follow}
    deliver(web, app, undo, remote_keys)
    with app.app_context():
        assert Follows(db.session.get(User, users["bob"])).followers_count() == 0


def test_update_and_delete_of_the_person(web, app, users, ann, remote_keys):
    changed = actor_document("https://remote.example", "ann", remote_keys[1])
    changed["summary"] = "<p>New about</p>"
    ann_does(web, app, remote_keys, "Update", changed)
    with app.app_context():
        assert db.session.get(User, ann).about_me == "New about"
    ann_does(web, app, remote_keys, "Delete", ANN)
    with app.app_context():
        assert db.session.get(User, ann) is None


@pytest.mark.parametrize(
    ("preferred", "expected"),
    [
        ("ann", "ann"),
        (None, "emily"),  # no preferredUsername: the last part of the id's path
        ("no spaces allowed", "emily"),
    ],
)
def test_an_actor_without_a_usable_username_is_named_from_its_id(app, preferred, expected):
    document = {"id": "https://elsewhere.example/actor/emily", "type": "Person"}
    if preferred is not None:
        document["preferredUsername"] = preferred
    with app.app_context():
        assert actors.remote_username(document, document["id"]) == expected


def test_an_actor_whose_id_names_nothing_usable_gets_a_stable_made_up_name(app):
    url = "https://elsewhere.example/users/%F0%9F%98%80/"
    with app.app_context():
        first = actors.remote_username({"id": url}, url)
        assert first.startswith("actor-") and first == actors.remote_username({"id": url}, url)
