"""Our server as bovine (an ActivityPub library nobody here wrote) sees it.

A live site of ours on 127.0.0.2 and a bovine server on 127.0.0.5 (tests/clients/
bovine_peer.py, in a venv of its own): bovine finds our users by WebFinger, fetches their
actors and outboxes signed, follows them, is followed, and sends posts that reach the home
timeline. What we deliver to it is checked with bovine's own signature validator.
"""

import json
import uuid

import pytest

from tests.conftest import PASSWORD
from tests.federation_clients import (
    ACTIVITY_JSON,
    LD_JSON,
    PUBLIC,
    actor_url,
    get_json,
    handle,
)
from tests.live import Browser, wait_for

pytestmark = pytest.mark.consumer

CONTEXT = "https://www.w3.org/ns/activitystreams"


@pytest.fixture
def site(our_site):
    return our_site


@pytest.fixture
def peer(remote_peer):
    return remote_peer


def signed_get(peer, actor: str, url: str) -> dict:
    """`url` fetched by bovine, signed as `actor`; the parsed JSON of a 200."""
    response = peer.command("get", actor=actor, url=url)
    assert response["status"] == 200, response
    assert response["headers"]["Content-Type"].startswith(ACTIVITY_JSON), response["headers"]
    return json.loads(response["body"])


def activity(kind: str, actor: dict, object_, **fields) -> dict:
    """A new activity of `actor` (as the peer describes it) with an id of its own."""
    return {
        "@context": CONTEXT,
        "id": f"{actor['id']}/activities/{uuid.uuid4().hex}",
        "type": kind,
        "actor": actor["id"],
        "object": object_,
        **fields,
    }


def post_to(peer, actor: dict, inbox: str, body: dict) -> int:
    """POST `body` to `inbox`, signed by bovine as `actor`; the status."""
    return peer.command("post", actor=actor["username"], url=inbox, activity=body)["status"]


def received(peer, kind: str, signed_by: str | None = None) -> list[dict]:
    """The activities of type `kind` that reached the peer's inboxes, with a valid
    signature (checked by bovine) by `signed_by` when given."""
    found = []
    for entry in peer.command("received"):
        if entry["method"] != "POST":
            continue
        body = json.loads(entry["body"])
        if body.get("type") == kind and (signed_by is None or entry.get("signed_by") == signed_by):
            found.append(body)
    return found


def object_id(value: str | dict) -> str | None:
    """The id of an activity's object, embedded or named."""
    return value if isinstance(value, str) else value.get("id")


def wait_for_activity(peer, kind: str, signed_by: str, about: str | None = None) -> dict:
    """The newest `kind` signed by `signed_by` (whose object is or has the id `about`),
    once the peer has received one."""

    def found():
        return [
            body
            for body in received(peer, kind, signed_by)
            if about is None or object_id(body["object"]) == about
        ][-1:]

    try:
        return wait_for(found, interval=0.2, what=f"a {kind} signed by {signed_by}")[0]
    except AssertionError as error:
        raise AssertionError(f"{error}; received: {peer.command('received')}") from None


def signed_in(site, username="alice") -> Browser:
    """A browser signed in to `site` as `username`."""
    browser = Browser(site.url)
    browser.login(username, PASSWORD)
    return browser


def publish(browser: Browser, text: str) -> None:
    """A new post, through the home page's form."""
    status, body = browser.submit("/index", {"post": text}, token_from="/index")
    assert status == 200, body[:500]


def follows_alice(site, peer, follower: dict) -> tuple[dict, dict]:
    """`follower` (a bovine actor) follows alice; returns alice's actor and the Follow once
    our server has accepted it, as bovine saw the Accept."""
    alice = signed_get(peer, follower["username"], actor_url(site, "alice"))
    follow = activity("Follow", follower, alice["id"])
    assert post_to(peer, follower, alice["inbox"], follow) == 202
    wait_for_activity(peer, "Accept", signed_by=alice["id"], about=follow["id"])
    return alice, follow


# --- identity -------------------------------------------------------------------------------


def test_bovine_finds_alice_by_webfinger_and_reads_her_actor(site, peer):
    peer.command("actor", name="zoe")
    found = peer.command("webfinger", acct=handle(site, "alice"), base=site.url)
    assert found == actor_url(site, "alice")
    alice = signed_get(peer, "zoe", found)
    assert alice["type"] == "Person"
    assert alice["id"] == found
    assert alice["preferredUsername"] == "alice"
    for collection in ("inbox", "outbox", "followers", "following"):
        assert alice[collection].startswith(site.url + "/"), (collection, alice)
    assert alice["endpoints"]["sharedInbox"].startswith(site.url + "/")
    key = alice["publicKey"]
    assert key["owner"] == alice["id"]
    assert key["id"].startswith(alice["id"])
    assert key["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    # `url` is the HTML profile: a page for a browser, the same actor for another server.
    assert alice["url"] == f"{site.url}/user/alice"
    status, page, headers = signed_in(site, "bob").get("/user/alice")
    assert status == 200 and "text/html" in headers["Content-Type"], headers
    assert get_json(alice["url"])["id"] == found
    # The other media type of ActivityPub gets the same JSON.
    assert get_json(found, accept=LD_JSON)["id"] == found


def test_bovine_reads_alices_outbox_with_her_posts(site, peer):
    peer.command("actor", name="zoe")
    browser = signed_in(site)
    for text in ("first words", "second words"):
        publish(browser, text)
    alice = signed_get(peer, "zoe", actor_url(site, "alice"))
    outbox = signed_get(peer, "zoe", alice["outbox"])
    assert outbox["type"] == "OrderedCollection"
    assert outbox["totalItems"] == 2
    first = outbox["first"]
    page = signed_get(peer, "zoe", first if isinstance(first, str) else first["id"])
    items = page["orderedItems"]
    notes = [item["object"] for item in items if item["type"] == "Create"]
    assert [note["type"] for note in notes] == ["Note", "Note"]
    # Newest first.
    assert "second words" in notes[0]["content"] and "first words" in notes[1]["content"]
    for note in notes:
        assert note["attributedTo"] == alice["id"]
        assert PUBLIC in note["to"]
        # Each Note has an id of its own that answers with the Note.
        assert signed_get(peer, "zoe", note["id"])["content"] == note["content"]


def test_nodeinfo_describes_the_site(site):
    index = get_json(f"{site.url}/.well-known/nodeinfo", accept="application/json")
    links = {link["rel"]: link["href"] for link in index["links"]}
    nodeinfo = get_json(
        links["http://nodeinfo.diaspora.software/ns/schema/2.1"], "application/json"
    )
    assert nodeinfo["version"] == "2.1"
    assert nodeinfo["software"]["name"] == "microblog"
    assert "activitypub" in nodeinfo["protocols"]
    assert nodeinfo["usage"]["users"]["total"] == 2
    assert nodeinfo["openRegistrations"] is True


# --- following, both ways -------------------------------------------------------------------


def test_bovine_follows_alice_and_is_accepted(site, peer):
    zoe = peer.command("actor", name="zoe")
    alice, follow = follows_alice(site, peer, zoe)
    followers = signed_get(peer, "zoe", alice["followers"])
    assert followers["totalItems"] == 1
    browser = signed_in(site, "bob")
    _status, page, _headers = browser.get("/user/alice/followers")
    assert zoe["handle"] in page.decode()
    # Undo removes the follow.
    undo = activity("Undo", zoe, follow)
    assert post_to(peer, zoe, alice["inbox"], undo) == 202
    wait_for(
        lambda: signed_get(peer, "zoe", alice["followers"])["totalItems"] == 0,
        interval=0.2,
        what="the Undo to remove zoe from alice's followers",
    )


def alice_follows(site, peer, followed: dict) -> Browser:
    """Alice finds the bovine account `followed` through search and follows it, and it
    accepts; returns her signed-in browser."""
    browser = signed_in(site)
    handle = followed["handle"]
    # Typing the handle in search looks the account up and shows its profile.
    status, page, _headers = browser.get(f"/search?q=%40{handle}")
    assert status == 200 and handle in page.decode()
    status, page, _headers = browser.get(f"/user/{handle}")
    assert status == 200 and followed["display_name"] in page.decode()
    status, _body = browser.submit(f"/follow/{handle}", token_from=f"/user/{handle}")
    assert status == 200
    alice_id = actor_url(site, "alice")
    follow = wait_for_activity(peer, "Follow", signed_by=alice_id)
    assert follow["object"] == followed["id"] and follow["actor"] == alice_id
    accept = activity("Accept", followed, follow)
    assert post_to(peer, followed, alice_inbox(site), accept) == 202
    following = get_json(actor_url(site, "alice"))["following"]
    wait_for(
        lambda: get_json(following)["totalItems"] == 1,
        interval=0.2,
        what="the Accept to make alice a follower",
    )
    return browser


def test_alice_follows_a_bovine_account_and_reads_its_posts(site, peer):
    zoe = peer.command("actor", name="zoe")
    browser = alice_follows(site, peer, zoe)
    note_id = f"{zoe['id']}/notes/{uuid.uuid4().hex}"
    note = {
        "id": note_id,
        "type": "Note",
        "attributedTo": zoe["id"],
        "content": "<p>Moo from <b>bovine</b><script>alert(1)</script></p>",
        "to": [PUBLIC],
        "cc": [f"{zoe['id']}/followers"],
        "published": "2026-12-07T12:00:00Z",
    }
    create = activity("Create", zoe, note, to=[PUBLIC], cc=note["cc"])
    assert post_to(peer, zoe, alice_inbox(site), create) == 202
    home = wait_for(
        lambda: (page := browser.get("/index")[1].decode()) and "Moo from" in page and page,
        interval=0.2,
        what="zoe's post in alice's home timeline",
    )
    # Sanitised: the script and its text are gone, and so is the bold.
    assert "alert(1)" not in home and "<b>bovine</b>" not in home
    # The same activity again (a retry by the sender) is applied once.
    assert post_to(peer, zoe, alice_inbox(site), create) == 202
    # An Update changes it, a Delete removes it.
    edited = {**note, "content": "<p>Moo, edited</p>", "updated": "2026-12-07T12:05:00Z"}
    assert post_to(peer, zoe, alice_inbox(site), activity("Update", zoe, edited)) == 202
    wait_for(
        lambda: "Moo, edited" in browser.get("/index")[1].decode(),
        interval=0.2,
        what="the Update to change zoe's post",
    )
    home = browser.get("/index")[1].decode()
    assert home.count("Moo, edited") == 1 and "Moo from" not in home
    delete = activity("Delete", zoe, {"id": note_id, "type": "Tombstone"})
    assert post_to(peer, zoe, alice_inbox(site), delete) == 202
    wait_for(
        lambda: "Moo, edited" not in browser.get("/index")[1].decode(),
        interval=0.2,
        what="the Delete to remove zoe's post",
    )


def alice_inbox(site) -> str:
    """Alice's inbox, as her actor document gives it."""
    return get_json(actor_url(site, "alice"))["inbox"]


def test_alices_new_post_reaches_her_bovine_follower(site, peer):
    zoe = peer.command("actor", name="zoe")
    alice, _follow = follows_alice(site, peer, zoe)
    publish(signed_in(site), "Hello, fediverse")
    create = wait_for_activity(peer, "Create", signed_by=alice["id"])
    note = create["object"]
    assert note["type"] == "Note" and "Hello, fediverse" in note["content"]
    assert create["actor"] == note["attributedTo"] == alice["id"]
    assert PUBLIC in note["to"] or PUBLIC in note.get("cc", [])


def test_profile_updates_and_deletion_of_a_bovine_account(site, peer):
    zoe = peer.command("actor", name="zoe")
    alice, _follow = follows_alice(site, peer, zoe)
    browser = signed_in(site, "bob")
    assert "Zoe of bovine" in browser.get(f"/user/{zoe['handle']}")[1].decode()
    document = peer.command(
        "update_actor", name="zoe", fields={"name": "Zoe Renamed", "summary": "<p>New me</p>"}
    )
    assert post_to(peer, zoe, alice["inbox"], activity("Update", zoe, document)) == 202
    wait_for(
        lambda: "Zoe Renamed" in browser.get(f"/user/{zoe['handle']}")[1].decode(),
        interval=0.2,
        what="the Update(Person) to change zoe's profile",
    )
    peer.command("update_actor", name="zoe", gone=True)
    assert post_to(peer, zoe, alice["inbox"], activity("Delete", zoe, zoe["id"])) == 202
    wait_for(
        lambda: browser.get(f"/user/{zoe['handle']}")[0] in (404, 410),
        interval=0.2,
        what="the Delete(Person) to remove zoe",
    )
    assert zoe["handle"] not in browser.get("/user/alice/followers")[1].decode()
