"""Remote people on our pages: found by a search, shown at /user/name@host with what their
server says (sanitised), their latest posts read by the worker, follow states, and listed
among a local user's followers as name@host."""

import urllib.parse

import pytest

import actors
import federation_in
from database import db
from follows import Follows
from models import Post, User
from tests.helpers import actor_document


@pytest.fixture
def app_config():
    return {
        "SITE_URL": "https://local.example",
        "FEDERATION_ALLOW_HTTP": True,
        "FEDERATION_ALLOW_PRIVATE": True,
    }


@pytest.fixture
def ann_server(remote):
    """ann on the `remote` server: WebFinger, her actor, her outbox with one public and one
    followers-only post and one direct message, her collections' totals."""
    base, host = remote.base, remote.host
    document = actor_document(base, "ann")
    document["following"] = f"{base}/users/ann/following"
    remote.json("/users/ann", document)
    remote.json(
        f"/.well-known/webfinger?resource=acct:ann@{host}",
        {"links": [{"rel": "self", "type": "application/activity+json", "href": document["id"]}]},
    )
    remote.json("/users/ann/followers", {"type": "OrderedCollection", "totalItems": 42})
    remote.json("/users/ann/following", {"type": "OrderedCollection", "totalItems": 7})

    def create(number, to):
        note = {
            "id": f"{base}/notes/{number}",
            "type": "Note",
            "attributedTo": document["id"],
            "content": f"<p>Outbox post {number}</p>",
            "to": to,
        }
        return {
            "id": f"{base}/c/{number}",
            "type": "Create",
            "actor": document["id"],
            "object": note,
        }

    items = [
        create(1, ["https://www.w3.org/ns/activitystreams#Public"]),
        create(2, [f"{base}/users/ann/followers"]),
        create(3, [f"{base}/users/someone"]),
    ]
    remote.json(
        "/users/ann/outbox",
        {"type": "OrderedCollection", "totalItems": 3, "first": f"{base}/users/ann/outbox?page=1"},
    )
    remote.json(
        "/users/ann/outbox?page=1", {"type": "OrderedCollectionPage", "orderedItems": items}
    )
    return f"ann@{host}"


def search(client, text):
    return client.get("/search?" + urllib.parse.urlencode({"q": text}), follow_redirects=True)


def test_search_finds_a_remote_account_and_shows_its_profile(client, auth, app, ann_server):
    auth.login("alice")
    response = search(client, f"@{ann_server}")
    assert response.request.path == f"/user/{ann_server}"
    page = response.text
    assert f'<h1 class="h3">{ann_server}</h1>' in page
    assert "Ann Example" in page and "<b>" not in page.split("<h1")[1].split("</h1>")[0]
    assert "<script>alert(1)</script>" not in page
    assert 'rel="nofollow noopener"' in page
    with app.app_context():
        user = User.by_username(ann_server)
        assert federation_in.fetch_remote_profile.call_local(user.id) == 2
    page = client.get(f"/user/{ann_server}").text
    assert "Outbox post 1" in page and "Outbox post 2" in page
    assert "Outbox post 3" not in page  # a direct message is no post
    assert '<span class="followers-count">42</span>' in page
    assert '<span class="following-count">7</span>' in page


def test_search_for_an_unknown_account_says_so(client, auth, remote):
    auth.login("alice")
    response = search(client, f"@nobody@{remote.host}")
    assert response.request.path == "/search"
    assert "could not be found" in response.text


def test_search_for_an_inside_address_is_refused_without_a_request(client, auth, app, remote):
    app.config["FEDERATION_ALLOW_PRIVATE"] = False
    auth.login("alice")
    response = search(client, f"@ann@{remote.host}")
    assert "is not a public address" in response.text
    assert remote.requests == []


def test_remote_lookups_are_throttled(client, auth, app, ann_server):
    app.config["FEDERATION_LOOKUP_LIMIT_PER_USER"] = 1
    auth.login("alice")
    search(client, f"@{ann_server}")
    response = search(client, f"@{ann_server}")
    assert "Too many searches for accounts on other servers" in response.text


def test_follow_states_and_followers_page(client, auth, app, users, ann_server):
    auth.login("alice")
    search(client, f"@{ann_server}")
    page = client.submit(f"/follow/{ann_server}", follow_redirects=True).text
    assert 'follow-state">Requested<' in page
    popup = client.get(f"/user/{ann_server}/popup").text
    assert f'action="/unfollow/{ann_server}"' in popup and "Cancel request" in popup
    with app.app_context():
        alice, ann = db.session.get(User, users["alice"]), User.by_username(ann_server)
        request_row = actors.follow_request(alice, ann)
        federation_in.on_accept({"object": request_row.activity_id}, ann)
        Follows(ann).follow(alice)
        db.session.commit()
    page = client.get(f"/user/{ann_server}").text
    assert 'follow-state">Following<' in page
    followers = client.get("/user/alice/followers").text
    assert f">{ann_server}<" in followers


def test_remote_posts_show_their_sanitised_html(client, auth, app, users, ann_server):
    auth.login("alice")
    search(client, f"@{ann_server}")
    with app.app_context():
        ann = User.by_username(ann_server)
        Follows(db.session.get(User, users["alice"])).follow(ann)
        note = {
            "id": "http://x/1",
            "content": '<p>Hi <a href="https://example.org">there</a>'
            "<img src=x onerror=alert(1)></p>",
        }
        federation_in.store_remote_post(note, ann)
        db.session.commit()
    page = client.get("/index").text
    assert '<p>Hi <a href="https://example.org" rel="nofollow noopener">there</a></p>' in page
    assert "onerror" not in page
    with app.app_context():
        assert db.session.scalar(Post.__table__.select().with_only_columns(Post.body)) == "Hi there"
