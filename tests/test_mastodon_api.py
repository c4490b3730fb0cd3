"""The Mastodon client API's endpoints: entities, paging by id with Link headers, the
statuses, follows and notifications a user makes and gets, others' things as 404, and odd
input as 4xx."""

import io
import json
import re

import pytest
import sqlalchemy as sa
from PIL import Image

from database import db
from jobs import Task
from mastodon_entities import MESSAGE_ID_BASE
from models import POST_MAX, Message, Post, User
from tests.helpers import add_posts, follow
from tests.mastodon_support import bearer, make_token

LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')


@pytest.fixture
def tokens(app, users):
    return {name: make_token(app, user_id) for name, user_id in users.items()}


def get(client, token, path, **kwargs):
    return client.get(path, headers=bearer(token), **kwargs)


def post(client, token, path, **kwargs):
    return client.post(path, headers=bearer(token), **kwargs)


def links(response):
    return {rel: url for url, rel in LINK.findall(response.headers.get("Link", ""))}


def ids(response):
    return [item["id"] for item in response.json]


# --- accounts ----------------------------------------------------------------------------------


def test_verify_credentials_is_a_mastodon_account(app, client, users, tokens):
    add_posts(app, users["alice"], ["one", "two"])
    follow(app, users["alice"], users["bob"])
    me = get(client, tokens["alice"], "/api/v1/accounts/verify_credentials").json
    assert me["id"] == str(users["alice"]) and me["username"] == me["acct"] == "alice"
    assert me["statuses_count"] == 2 and me["following_count"] == 1
    assert me["followers_count"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", me["created_at"])
    assert me["avatar"].startswith("http://localhost/")
    assert me["source"]["privacy"] == "public"


def test_update_credentials_changes_the_note(app, client, users, tokens):
    response = client.patch(
        "/api/v1/accounts/update_credentials",
        headers=bearer(tokens["alice"]),
        data={"note": "I <3 tests", "display_name": "Alice"},
    )
    assert response.status_code == 200, response.json
    assert response.json["source"]["note"] == "I <3 tests"
    assert response.json["note"] == "<p>I &lt;3 tests</p>"
    too_long = client.patch(
        "/api/v1/accounts/update_credentials",
        headers=bearer(tokens["alice"]),
        json={"note": "x" * 1000},
    )
    assert too_long.status_code == 422


def png_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), "red").save(buffer, "PNG")
    return buffer.getvalue()


def test_update_credentials_avatar_starts_the_picture_task(app, client, users, tokens):
    response = client.patch(
        "/api/v1/accounts/update_credentials",
        headers=bearer(tokens["alice"]),
        data={"avatar": (io.BytesIO(png_bytes()), "me.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200, response.json
    with app.app_context():
        task = db.session.scalar(sa.select(Task).where(Task.user_id == users["alice"]))
    assert task is not None and task.name == "process_avatar"
    not_a_picture = client.patch(
        "/api/v1/accounts/update_credentials",
        headers=bearer(tokens["bob"]),
        data={"avatar": (io.BytesIO(b"not a picture"), "me.png")},
        content_type="multipart/form-data",
    )
    assert not_a_picture.status_code == 422


def test_lookup_get_and_search_accounts(client, users, tokens):
    assert client.get("/api/v1/accounts/lookup?acct=bob").json["id"] == str(users["bob"])
    assert client.get("/api/v1/accounts/lookup?acct=@bob@localhost").json["username"] == "bob"
    assert client.get("/api/v1/accounts/lookup?acct=nobody").status_code == 404
    assert client.get(f"/api/v1/accounts/{users['carol']}").json["acct"] == "carol"
    found = get(client, tokens["alice"], "/api/v1/accounts/search?q=car").json
    assert [account["username"] for account in found] == ["carol"]


def test_follow_unfollow_and_relationships(app, client, users, tokens):
    bob = users["bob"]
    followed = post(client, tokens["alice"], f"/api/v1/accounts/{bob}/follow")
    assert followed.json["following"] is True and followed.json["id"] == str(bob)
    back = post(client, tokens["bob"], f"/api/v1/accounts/{users['alice']}/follow").json
    assert back["following"] and back["followed_by"]
    relation = get(client, tokens["alice"], f"/api/v1/accounts/relationships?id[]={bob}").json
    assert relation[0]["following"] and relation[0]["followed_by"]
    followers = client.get(f"/api/v1/accounts/{bob}/followers").json
    assert [account["username"] for account in followers] == ["alice"]
    unfollowed = post(client, tokens["alice"], f"/api/v1/accounts/{bob}/unfollow").json
    assert unfollowed["following"] is False
    assert client.get(f"/api/v1/accounts/{bob}/followers").json == []
    self_follow = post(client, tokens["alice"], f"/api/v1/accounts/{users['alice']}/follow")
    assert self_follow.status_code == 403


# --- statuses ------------------------------------------------------------------------------------


def test_create_get_and_delete_a_status(app, client, users, tokens):
    created = post(client, tokens["alice"], "/api/v1/statuses", data={"status": "Hi @bob"})
    assert created.status_code == 200, created.json
    status = created.json
    assert status["visibility"] == "public" and status["account"]["username"] == "alice"
    assert status["content"].startswith('<p>Hi <a class="mention"')
    assert status["mentions"][0]["username"] == "bob"
    assert client.get(f"/api/v1/statuses/{status['id']}/").json["id"] == status["id"]
    context = client.get(f"/api/v1/statuses/{status['id']}/context").json
    assert context == {"ancestors": [], "descendants": []}
    not_hers = client.delete(f"/api/v1/statuses/{status['id']}", headers=bearer(tokens["bob"]))
    assert not_hers.status_code == 404
    deleted = client.delete(f"/api/v1/statuses/{status['id']}", headers=bearer(tokens["alice"]))
    assert deleted.status_code == 200 and deleted.json["text"] == "Hi @bob"
    assert client.get(f"/api/v1/statuses/{status['id']}").status_code == 404


def test_idempotency_key_makes_one_status(app, client, users, tokens):
    headers = {**bearer(tokens["alice"]), "Idempotency-Key": "abc-123"}
    first = client.post("/api/v1/statuses", headers=headers, json={"status": "once"})
    second = client.post("/api/v1/statuses", headers=headers, json={"status": "once"})
    assert first.json["id"] == second.json["id"]
    other_user = client.post(
        "/api/v1/statuses",
        headers={**bearer(tokens["bob"]), "Idempotency-Key": "abc-123"},
        json={"status": "once"},
    )
    assert other_user.json["id"] != first.json["id"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 2


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"status": ""}, "Text"),
        ({"status": "x" * (POST_MAX + 1)}, "Text"),
        ({"status": "with a picture", "media_ids": ["1"]}, "Media"),
        ({"status": "a poll", "poll": {"options": ["a", "b"], "expires_in": 60}}, "Polls"),
        ({"status": 12}, "Validation failed"),
        ({"status": "@nobody hello", "visibility": "direct"}, "direct"),
    ],
)
def test_statuses_refused_with_422(app, client, users, tokens, fields, needle):
    response = post(client, tokens["alice"], "/api/v1/statuses", json=fields)
    assert response.status_code == 422
    assert needle in response.json["error"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 0


@pytest.mark.parametrize("action", ["favourite", "unfavourite", "reblog", "unreblog"])
def test_favourites_and_boosts_are_a_clear_422(app, client, users, tokens, action):
    add_posts(app, users["bob"], ["boost me"])
    with app.app_context():
        post_id = db.session.scalar(sa.select(Post.id))
    response = post(client, tokens["alice"], f"/api/v1/statuses/{post_id}/{action}")
    assert response.status_code == 422
    assert "not supported" in response.json["error"]
    assert post(client, tokens["alice"], "/api/v1/statuses/999/favourite").status_code == 404


# --- timelines and paging ------------------------------------------------------------------


def test_home_timeline_pages_by_id_with_link_headers(app, client, users, tokens):
    add_posts(app, users["bob"], 5, body="bob {i}")
    add_posts(app, users["carol"], 3, body="carol {i}")  # not followed: never shown
    add_posts(app, users["alice"], 1, body="mine")
    follow(app, users["alice"], users["bob"])
    first = get(client, tokens["alice"], "/api/v1/timelines/home?limit=4")
    assert [s["content"] for s in first.json] == [
        "<p>mine</p>",
        "<p>bob 4</p>",
        "<p>bob 3</p>",
        "<p>bob 2</p>",
    ]
    page_links = links(first)
    assert "max_id=" in page_links["next"] and "min_id=" in page_links["prev"]
    second = get(client, tokens["alice"], page_links["next"])
    assert [s["content"] for s in second.json] == ["<p>bob 1</p>", "<p>bob 0</p>"]
    last = get(client, tokens["alice"], links(second)["next"])
    assert last.json == [] and "Link" not in last.headers
    newer = get(client, tokens["alice"], links(second)["prev"])
    assert ids(newer) == ids(first)  # min_id: the page just above, newest first
    since = get(client, tokens["alice"], f"/api/v1/timelines/home?since_id={first.json[2]['id']}")
    assert ids(since) == ids(first)[:2]


def test_public_and_tag_timelines(app, client, users):
    add_posts(app, users["bob"], ["plain", "about #python", "#Python again"])
    public = client.get("/api/v1/timelines/public?local=true&limit=2")
    assert len(public.json) == 2 and links(public)
    assert client.get("/api/v1/timelines/public?remote=true").json == []
    tagged = client.get("/api/v1/timelines/tag/python").json
    assert [s["text"] for s in tagged] == ["#Python again", "about #python"]


def test_account_statuses_and_paging_limits(app, client, users):
    add_posts(app, users["bob"], 50)
    page = client.get(f"/api/v1/accounts/{users['bob']}/statuses?limit=1000")
    assert len(page.json) == 40  # Mastodon's cap
    assert len(client.get(f"/api/v1/accounts/{users['bob']}/statuses").json) == 20
    pinned = client.get(f"/api/v1/accounts/{users['bob']}/statuses?pinned=true")
    assert pinned.json == []


# --- notifications, markers, conversations ------------------------------------------------------


def test_notifications_for_follows_mentions_and_messages(app, client, users, tokens):
    post(client, tokens["bob"], f"/api/v1/accounts/{users['alice']}/follow")
    post(client, tokens["carol"], "/api/v1/statuses", data={"status": "hello @alice"})
    direct = post(
        client,
        tokens["bob"],
        "/api/v1/statuses",
        data={"status": "@alice psst", "visibility": "direct"},
    )
    assert direct.status_code == 200 and direct.json["visibility"] == "direct"
    with app.app_context():
        message = db.session.scalar(sa.select(Message))
        assert message.recipient_id == users["alice"] and message.body == "@alice psst"
    found = get(client, tokens["alice"], "/api/v1/notifications").json
    kinds = [(n["type"], n["account"]["username"]) for n in found]
    assert kinds == [("mention", "bob"), ("mention", "carol"), ("follow", "bob")]
    assert found[0]["status"]["visibility"] == "direct"
    assert found[1]["status"]["visibility"] == "public"
    only_follows = get(client, tokens["alice"], "/api/v1/notifications?types[]=follow").json
    assert [n["type"] for n in only_follows] == ["follow"]
    assert get(client, tokens["bob"], "/api/v1/notifications").json == []
    # Another user's notification is not found; dismissing it does nothing.
    assert get(client, tokens["bob"], f"/api/v1/notifications/{found[0]['id']}").status_code == 404
    theirs = post(client, tokens["bob"], f"/api/v1/notifications/{found[0]['id']}/dismiss")
    assert theirs.status_code == 404
    dismissed = post(client, tokens["alice"], f"/api/v1/notifications/{found[0]['id']}/dismiss")
    assert dismissed.status_code == 200
    assert len(get(client, tokens["alice"], "/api/v1/notifications").json) == 2
    assert post(client, tokens["alice"], "/api/v1/notifications/clear").json == {}
    assert get(client, tokens["alice"], "/api/v1/notifications").json == []


def test_a_private_message_is_a_direct_status_only_its_two_people_see(app, client, users, tokens):
    direct = post(
        client,
        tokens["bob"],
        "/api/v1/statuses",
        json={"status": "@alice hi", "visibility": "direct"},
    ).json
    assert int(direct["id"]) > MESSAGE_ID_BASE
    assert get(client, tokens["alice"], f"/api/v1/statuses/{direct['id']}").status_code == 200
    assert get(client, tokens["carol"], f"/api/v1/statuses/{direct['id']}").status_code == 404
    assert client.get(f"/api/v1/statuses/{direct['id']}").status_code == 404
    conversations = get(client, tokens["alice"], "/api/v1/conversations").json
    assert conversations[0]["accounts"][0]["username"] == "bob"
    assert conversations[0]["unread"] is True
    assert conversations[0]["last_status"]["id"] == direct["id"]
    read = post(client, tokens["alice"], f"/api/v1/conversations/{users['bob']}/read")
    assert read.json["unread"] is False
    assert get(client, tokens["carol"], "/api/v1/conversations").json == []
    assert (
        post(client, tokens["carol"], f"/api/v1/conversations/{users['bob']}/read").status_code
        == 404
    )


def test_markers(client, users, tokens):
    saved = post(client, tokens["alice"], "/api/v1/markers", data={"home[last_read_id]": "42"})
    assert saved.json["home"]["last_read_id"] == "42"
    again = post(client, tokens["alice"], "/api/v1/markers", json={"home": {"last_read_id": "43"}})
    assert again.json["home"]["version"] == 2
    read = get(client, tokens["alice"], "/api/v1/markers?timeline[]=home&timeline[]=notifications")
    assert list(read.json) == ["home"]
    assert get(client, tokens["bob"], "/api/v1/markers?timeline[]=home").json == {}
    bad = post(client, tokens["alice"], "/api/v1/markers", json={"home": {"last_read_id": "x"}})
    assert bad.status_code == 422


def test_search_v2(app, client, users, tokens):
    add_posts(app, users["bob"], ["the quick brown fox", "nothing here"])
    result = get(client, tokens["alice"], "/api/v2/search?q=bob").json
    assert [a["username"] for a in result["accounts"]] == ["bob"]
    words = get(client, tokens["alice"], "/api/v2/search?q=quick%20fox&type=statuses").json
    assert [s["text"] for s in words["statuses"]] == ["the quick brown fox"]
    assert words["accounts"] == [] and words["hashtags"] == []
    remote = get(client, tokens["alice"], "/api/v2/search?q=@bob@localhost&resolve=true").json
    assert [a["username"] for a in remote["accounts"]] == ["bob"]


# --- the instance and what we do not have ----------------------------------------------------


def test_instance(client, users):
    v1 = client.get("/api/v1/instance").json
    assert v1["version"].startswith("4.") and v1["stats"]["user_count"] == 3
    v2 = client.get("/api/v2/instance").json
    assert v2["configuration"]["statuses"]["max_characters"] == POST_MAX
    assert v2["api_versions"] == {"mastodon": 2}
    assert client.get("/api/v1/custom_emojis").json == []
    assert client.get("/api/v1/instance/peers").json == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/filters",
        "/api/v2/filters",
        "/api/v1/lists",
        "/api/v1/follow_requests",
        "/api/v1/blocks",
        "/api/v1/mutes",
        "/api/v1/bookmarks/",
        "/api/v1/accounts/2/lists",
        "/api/v1/notifications/requests",
    ],
)
def test_features_we_lack_are_empty_lists(client, users, tokens, path):
    response = get(client, tokens["alice"], path)
    assert response.status_code == 200 and response.json == []
    assert client.get(path).status_code == 401  # still only for a signed-in app


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/trends/tags",
        "/api/v1/trends/statuses",
        "/api/v1/accounts/2/featured_tags",
        "/api/v1/instance/rules",
    ],
)
def test_public_lists_we_lack_are_empty_for_anyone(client, users, path):
    response = client.get(path)
    assert response.status_code == 200 and response.json == []


# --- our own tasks ----------------------------------------------------------------------------


def test_export_and_import_tasks_are_the_owner_s(app, client, users, tokens):
    started = post(client, tokens["alice"], "/api/v1/microblog/exports")
    assert started.status_code == 202, started.json
    task = started.json
    assert task["status"] == "queued" and task["download_url"] is None
    assert post(client, tokens["alice"], "/api/v1/microblog/exports").status_code == 409
    assert (
        get(client, tokens["alice"], f"/api/v1/microblog/tasks/{task['id']}").json["id"]
        == task["id"]
    )
    assert get(client, tokens["bob"], f"/api/v1/microblog/tasks/{task['id']}").status_code == 404
    theirs = get(client, tokens["bob"], f"/api/v1/microblog/tasks/{task['id']}/download")
    assert theirs.status_code == 404
    assert [t["id"] for t in get(client, tokens["alice"], "/api/v1/microblog/tasks").json] == [
        task["id"]
    ]
    upload = json.dumps({"posts": [{"body": "imported", "timestamp": "2024-05-01T12:00:00Z"}]})
    imported = post(
        client,
        tokens["bob"],
        "/api/v1/microblog/imports",
        data={"file": (io.BytesIO(upload.encode()), "posts.json")},
        content_type="multipart/form-data",
    )
    assert imported.status_code == 202, imported.json
    assert post(client, tokens["bob"], "/api/v1/microblog/imports", data={}).status_code == 422


# --- odd input ------------------------------------------------------------------------------------

HUGE = "9" * 30


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/accounts/{HUGE}",
        "/api/v1/accounts/abc",
        f"/api/v1/statuses/{HUGE}",
        "/api/v1/statuses/-1",
        f"/api/v1/notifications/{HUGE}",
        f"/api/v1/timelines/home?max_id={HUGE}",
        "/api/v1/timelines/home?limit=-5",
        "/api/v1/timelines/home?since_id=%F0%9F%98%80",
        f"/api/v1/accounts/{HUGE}/statuses",
        "/api/v1/accounts/lookup",
        "/api/v2/search",
        "/api/v2/search?q=x&type=people",
        "/api/v1/microblog/tasks/" + "x" * 100,
    ],
)
def test_odd_urls_are_4xx(client, users, tokens, path):
    response = get(client, tokens["alice"], path)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.json["error"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"status": "\\ud800 lone"}', "application/json"),
        ("[" * 1000 + "]" * 1000, "application/json"),
        ('{"status": ' + "[" * 1000 + "]" * 1000 + "}", "application/json"),
        ("not json", "application/json"),
        ('["a list"]', "application/json"),
        ("", "application/json"),
        (b"\xff\xfe\x00binary", "application/octet-stream"),
        ('{"status": ' + "9" * 5000 + "}", "application/json"),
    ],
)
def test_odd_bodies_are_4xx(app, client, users, tokens, body, content_type):
    response = client.post(
        "/api/v1/statuses",
        data=body,
        headers={**bearer(tokens["alice"]), "Content-Type": content_type},
    )
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.json["error"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 0


def test_unknown_endpoint_is_a_json_404(client):
    response = client.get("/api/v1/no_such_thing")
    assert response.status_code == 404 and response.json["error"]


# --- PostgreSQL (only when TEST_DATABASE_URL is set) -----------------------------------------


def test_the_api_on_postgresql(pg_app):
    """The same queries on a migrated PostgreSQL database: conversations grouped by the other
    account, notifications, paging, search and Idempotency-Key."""
    client = pg_app.test_client()
    with pg_app.app_context():
        alice, bob = (
            db.session.scalar(sa.select(User.id).where(User.username == name))
            for name in ("alice", "bob")
        )
    alice_token, bob_token = make_token(pg_app, alice), make_token(pg_app, bob)
    post(client, bob_token, f"/api/v1/accounts/{alice}/follow")
    for text in ("first @alice", "second", "third"):
        headers = {**bearer(bob_token), "Idempotency-Key": text}
        client.post("/api/v1/statuses", headers=headers, json={"status": text})
        client.post("/api/v1/statuses", headers=headers, json={"status": text})
    post(
        client, bob_token, "/api/v1/statuses", json={"status": "@alice dm", "visibility": "direct"}
    )
    timeline = get(client, bob_token, "/api/v1/timelines/home?limit=2")
    assert [s["text"] for s in timeline.json] == ["third", "second"]
    assert [s["text"] for s in get(client, bob_token, links(timeline)["next"]).json] == [
        "first @alice"
    ]
    kinds = [n["type"] for n in get(client, alice_token, "/api/v1/notifications").json]
    assert kinds == ["mention", "mention", "follow"]
    conversations = get(client, alice_token, "/api/v1/conversations")
    assert [c["accounts"][0]["username"] for c in conversations.json] == ["bob"]
    assert get(client, alice_token, links(conversations)["next"]).json == []
    found = get(client, alice_token, "/api/v2/search?q=second").json
    assert [s["text"] for s in found["statuses"]] == ["second"]


def test_web_apps_of_any_origin_may_call_the_api(client, users, tokens):
    preflight = client.options(
        "/api/v1/timelines/home",
        headers={"Origin": "https://elk.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    timeline = get(client, tokens["alice"], "/api/v1/timelines/home")
    assert timeline.headers["Access-Control-Allow-Origin"] == "*"
    assert timeline.headers["Access-Control-Expose-Headers"] == "Link"
    refused = client.get("/api/v1/timelines/home")
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"
    token = client.post("/oauth/token", data={"grant_type": "password"})
    assert token.headers["Access-Control-Allow-Origin"] == "*"
    # The pages are not opened to other origins: not the authorize page, nor the API of old.
    assert "Access-Control-Allow-Origin" not in client.get("/oauth/authorize").headers
    assert "Access-Control-Allow-Origin" not in client.get("/api/users").headers


# --- remote accounts (rows of the same table, with a domain) -----------------------------------


@pytest.fixture
def carl(app):
    """A remote account, as federation stores one: name@host, a domain, its actor's row."""
    from actors import RemoteActor

    with app.app_context():
        user = User(username="carl@remote.example", domain="remote.example")
        db.session.add(user)
        db.session.flush()
        db.session.add(
            RemoteActor(
                user_id=user.id,
                actor_url="https://remote.example/users/carl",
                inbox="https://remote.example/users/carl/inbox",
                profile_url="https://remote.example/@carl",
                key_id="https://remote.example/users/carl#main-key",
                public_key_pem="-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",
                display_name="Carl Remote",
                summary_html="<p>far away</p>",
                followers_count=7,
                following_count=3,
                posts_count=99,
            )
        )
        db.session.commit()
        return user.id


def test_a_remote_account_has_its_handle_and_its_servers_profile(app, client, users, tokens, carl):
    add_posts(app, carl, ["from afar"])
    add_posts(app, users["bob"], ["from here"])
    shown = client.get(f"/api/v1/accounts/{carl}").json
    assert (shown["username"], shown["acct"]) == ("carl", "carl@remote.example")
    assert shown["display_name"] == "Carl Remote" and shown["note"] == "<p>far away</p>"
    assert shown["url"] == "https://remote.example/@carl"
    assert (shown["followers_count"], shown["statuses_count"]) == (7, 99)
    looked_up = client.get("/api/v1/accounts/lookup?acct=carl@remote.example").json
    assert looked_up["id"] == str(carl)
    local = client.get("/api/v1/timelines/public?local=true").json
    remote = client.get("/api/v1/timelines/public?remote=true").json
    assert [s["text"] for s in local] == ["from here"]
    assert [(s["text"], s["account"]["acct"]) for s in remote] == [
        ("from afar", "carl@remote.example")
    ]
    assert client.get("/api/v1/instance/peers").json == ["remote.example"]
    found = get(client, tokens["alice"], "/api/v2/search?q=@carl@remote.example").json
    assert [a["acct"] for a in found["accounts"]] == ["carl@remote.example"]


def test_following_a_remote_account_is_requested_until_its_server_accepts(
    app, client, users, tokens, carl
):
    relation = post(client, tokens["alice"], f"/api/v1/accounts/{carl}/follow").json
    assert relation["requested"] is True and relation["following"] is False
    undone = post(client, tokens["alice"], f"/api/v1/accounts/{carl}/unfollow").json
    assert undone["requested"] is False and undone["following"] is False


def test_a_remote_post_keeps_its_address_and_cleaned_content(app, client, carl):
    with app.app_context():
        db.session.add(
            Post(
                body="hello from afar",
                user_id=carl,
                ap_id="https://remote.example/users/carl/statuses/1",
                url="https://remote.example/@carl/1",
                html="<p>hello <em>from</em> afar</p>",
            )
        )
        db.session.commit()
    shown = client.get("/api/v1/timelines/public?remote=true").json[0]
    assert shown["uri"] == "https://remote.example/users/carl/statuses/1"
    assert shown["url"] == "https://remote.example/@carl/1"
    assert shown["content"] == "<p>hello <em>from</em> afar</p>"
    assert shown["account"]["acct"] == "carl@remote.example"


@pytest.mark.parametrize("app_config", [{"FEDERATION": True}])
def test_statuses_from_an_app_reach_remote_followers(app, client, users, tokens, carl, monkeypatch):
    import federation_out

    sent = []
    monkeypatch.setattr(
        federation_out, "send", lambda activity, signer, inboxes: sent.append((activity, inboxes))
    )
    follow(app, carl, users["alice"])
    created = post(client, tokens["alice"], "/api/v1/statuses", json={"status": "federated"})
    assert created.status_code == 200
    activity, inboxes = sent[0]
    assert activity["type"] == "Create" and activity["object"]["content"].startswith("<p>")
    assert inboxes == ["https://remote.example/users/carl/inbox"]
    client.delete(f"/api/v1/statuses/{created.json['id']}", headers=bearer(tokens["alice"]))
    assert sent[1][0]["type"] == "Delete"
