"""The JSON API: tokens, users, posts, errors and the OpenAPI contract.

Every response of these tests is checked against /api/openapi.json by the `api`
client: a status the document does not list, a missing header or a body that
does not match its schema fails the test that caused it.
"""

import base64
import hashlib
import io
import json
import os
import re
import uuid
from datetime import timedelta

import pytest
import schemathesis
import sqlalchemy as sa

import administration
import ratelimit
from api import document as api_document
from database import db, utcnow
from jobs import Task
from models import ApiToken, Post, RateLimitHit, User
from tests.conftest import PASSWORD
from tests.helpers import add_posts, assert_json_error, exported_posts, follow

# Read at import: the `app` fixture removes REDIS_URL from the environment.
REDIS_URL = os.environ.get("REDIS_URL")

# --- the contract-checking client --------------------------------------------------------


def spec_path(rule: str) -> str:
    """`/api/users/<int:id>` → `/api/users/{id}`."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


class ApiClient:
    """The Flask test client, checking each /api response against the OpenAPI document."""

    def __init__(self, app, client):
        self.app = app
        self.client = client
        self.document = api_document()
        self.schema = schemathesis.openapi.from_dict(self.document)

    def open(self, method, url, token=None, basic=None, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if basic:
            credentials = base64.b64encode(":".join(basic).encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"
        response = self.client.open(url, method=method, headers=headers, **kwargs)
        self.check(method, url, response)
        return response

    def get(self, url, **kwargs):
        return self.open("GET", url, **kwargs)

    def post(self, url, **kwargs):
        return self.open("POST", url, **kwargs)

    def put(self, url, **kwargs):
        return self.open("PUT", url, **kwargs)

    def delete(self, url, **kwargs):
        return self.open("DELETE", url, **kwargs)

    def check(self, method, url, response):
        """Fail unless the response is one the document promises."""
        assert response.mimetype == "application/json" or response.status_code == 204
        if response.status_code >= 400:
            body = response.get_json()
            assert set(body) >= {"error", "message"}, body
        operation = self.operation_for(method, url)
        if operation is None:  # an unknown URL or method: a plain JSON error
            assert response.status_code in (404, 405)
            return
        path, definition = operation
        documented = definition["responses"]
        status = str(response.status_code)
        assert status in documented, f"{method} {path} returned undocumented {status}"
        declared = self.resolve(documented[status])
        for name, header in declared.get("headers", {}).items():
            if header.get("required"):
                assert name in response.headers, f"{method} {path} {status}: no {name} header"
                pattern = header["schema"].get("pattern")
                assert not pattern or re.search(pattern, response.headers[name])
        self.schema[path][method].validate_response(response)

    def operation_for(self, method, url):
        adapter = self.app.url_map.bind("localhost")
        try:
            rule, _ = adapter.match(url.split("?")[0], method, return_rule=True)
        except Exception:
            return None
        path = spec_path(rule.rule)
        return path, self.document["paths"][path][method.lower()]

    def resolve(self, item):
        while "$ref" in item:
            _, section, kind, name = item["$ref"].split("/")
            item = self.document[section][kind][name]
        return item


@pytest.fixture
def api(app, client):
    return ApiClient(app, client)


@pytest.fixture
def token_for(app):
    """Issue a bearer token for a user id directly (skipping the slow password check)."""

    def issue(user_id):
        with app.app_context():
            token, _ = ApiToken.issue(db.session.get(User, user_id))
            db.session.commit()
            return token

    return issue


@pytest.fixture
def tokens(users, token_for):
    return {name: token_for(user_id) for name, user_id in users.items()}


# --- tokens ----------------------------------------------------------------------------------


def test_token_from_basic_auth_is_stored_hashed(app, api, users):
    response = api.post("/api/tokens", basic=("alice", PASSWORD))
    assert response.status_code == 200
    token = response.json["token"]
    with app.app_context():
        row = db.session.scalar(sa.select(ApiToken))
        assert row.user_id == users["alice"]
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in row.token_hash
        lifetime = row.expires_at - utcnow()
        assert timedelta(minutes=59) < lifetime <= timedelta(hours=1)
    assert api.get("/api/users/1", token=token).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}x".encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(f"nobody:{PASSWORD}".encode()).decode()},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer sometoken"},
    ],
    ids=["none", "wrong-password", "unknown-user", "malformed", "bearer"],
)
def test_token_refused_without_good_credentials(app, api, users, headers):
    response = api.post("/api/tokens", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer ", "Bearer not-a-token", "Basic YWxpY2U6eA==", "Token abc"],
)
def test_bearer_endpoints_refuse_bad_tokens(api, users, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = api.get("/api/timeline", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="microblog"'


def test_expired_token_is_refused(app, api, tokens):
    with app.app_context():
        db.session.execute(sa.update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    response = api.get("/api/timeline", token=tokens["alice"])
    assert response.status_code == 401
    assert "expired" in response.json["message"]


def test_revoke_token(app, api, users, token_for):
    first, second = token_for(users["alice"]), token_for(users["alice"])
    response = api.delete("/api/tokens", token=first)
    assert response.status_code == 204
    assert response.data == b""
    assert api.get("/api/timeline", token=first).status_code == 401
    assert api.get("/api/timeline", token=second).status_code == 200  # other devices keep theirs
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 1


def test_revoke_needs_a_token(api, users):
    assert api.delete("/api/tokens").status_code == 401


def test_new_token_drops_the_users_expired_ones(app, api, users, token_for):
    token_for(users["alice"])
    with app.app_context():
        db.session.execute(sa.update(ApiToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert api.post("/api/tokens", basic=("alice", PASSWORD)).status_code == 200
    with app.app_context():
        rows = db.session.scalars(sa.select(ApiToken)).all()
        assert len(rows) == 1 and rows[0].expires_at > utcnow()


# --- rate limiting ---------------------------------------------------------------------------


def ask_tokens(api, username, times, ip="10.0.0.1", password="wrong"):
    return [
        api.post(
            "/api/tokens", basic=(username, password), environ_base={"REMOTE_ADDR": ip}
        ).status_code
        for _ in range(times)
    ]


def test_token_requests_limited_per_address_and_user(app, api, users):
    app.config.update(API_TOKEN_LIMIT_PER_USER=3, API_TOKEN_LIMIT_PER_IP=100)
    assert ask_tokens(api, "alice", 3) == [401, 401, 401]
    response = api.post(
        "/api/tokens", basic=("alice", "x"), environ_base={"REMOTE_ADDR": "10.0.0.1"}
    )
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= app.config["API_TOKEN_LIMIT_WINDOW"]
    assert ask_tokens(api, "ALICE", 1) == [429]  # usernames count case-insensitively
    assert ask_tokens(api, "someone-else", 1) == [401]
    # The owner, from another address, is not locked out by that flood.
    assert ask_tokens(api, "alice", 1, ip="10.9.9.9", password=PASSWORD) == [200]


def test_token_requests_limited_per_ip(app, api, users):
    app.config.update(API_TOKEN_LIMIT_PER_USER=100, API_TOKEN_LIMIT_PER_IP=3)
    statuses = [ask_tokens(api, f"user{n}", 1, ip="10.0.0.7")[0] for n in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert ask_tokens(api, "user9", 1, ip="10.0.0.8") == [401]


def test_limited_user_is_refused_even_with_the_right_password(app, api, users):
    app.config.update(API_TOKEN_LIMIT_PER_USER=2)
    ask_tokens(api, "alice", 2)
    assert ask_tokens(api, "alice", 1, password=PASSWORD) == [429]


def test_limit_lifts_after_the_window(app, api, users, monkeypatch):
    app.config.update(API_TOKEN_LIMIT_PER_USER=2, API_TOKEN_LIMIT_WINDOW=60)
    assert ask_tokens(api, "ghost", 3) == [401, 401, 429]
    later = ratelimit.clock() + 61
    monkeypatch.setattr(ratelimit, "clock", lambda: later)
    assert ask_tokens(api, "ghost", 1) == [401]
    with app.app_context():  # old attempts are pruned: only this one's IP and user hits remain
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RateLimitHit)) == 2


def test_limit_is_shared_between_processes(app, users, tmp_path):
    """Two app instances (as two gunicorn workers would be) see the same counts."""
    from microblog import create_app

    config = {
        "TESTING": True,
        "DATA_DIR": str(tmp_path),
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "API_TOKEN_LIMIT_PER_USER": 4,
    }
    first, second = create_app(config), create_app(config)
    clients = [ApiClient(first, first.test_client()), ApiClient(second, second.test_client())]
    statuses = [ask_tokens(clients[n % 2], "ghost", 1)[0] for n in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    for instance in (first, second):
        with instance.app_context():
            db.engine.dispose()


@pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set (CI sets it)")
def test_limit_kept_in_redis_when_configured(app, users, tmp_path):
    """With REDIS_URL the counts live in Redis (under a per-test prefix), shared too."""
    import redis

    from microblog import create_app

    prefix = f"test-ratelimit-{uuid.uuid4().hex}:"
    config = {
        "TESTING": True,
        "DATA_DIR": str(tmp_path),
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "REDIS_URL": REDIS_URL,
        "RATE_LIMIT_PREFIX": prefix,
        "API_TOKEN_LIMIT_PER_USER": 2,
    }
    first, second = create_app(config), create_app(config)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        clients = [ApiClient(first, first.test_client()), ApiClient(second, second.test_client())]
        statuses = [ask_tokens(clients[n % 2], "ghost", 1)[0] for n in range(3)]
        assert statuses == [401, 401, 429]
        assert client.keys(f"{prefix}*")
        with first.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(RateLimitHit)) == 0
    finally:
        keys = client.keys(f"{prefix}*")
        if keys:
            client.delete(*keys)
        client.close()
        for instance in (first, second):
            with instance.app_context():
                db.engine.dispose()


# --- users -----------------------------------------------------------------------------------


def test_get_user_shows_email_only_to_its_owner(app, api, users, tokens):
    add_posts(app, users["bob"], ["one", "two"])
    follow(app, users["alice"], users["bob"])
    own = api.get(f"/api/users/{users['alice']}", token=tokens["alice"]).json
    assert own["email"] == "alice@example.com"
    assert own["following_count"] == 1
    other = api.get(f"/api/users/{users['bob']}", token=tokens["alice"]).json
    assert "email" not in other
    assert other["username"] == "bob"
    assert (other["post_count"], other["follower_count"]) == (2, 1)
    assert other["_links"]["posts"] == f"/api/users/{users['bob']}/posts"


@pytest.mark.parametrize(
    "url",
    [
        "/api/users/999",
        "/api/users/999/followers",
        "/api/users/999/following",
        "/api/users/999/posts",
        "/api/users/0",
        "/api/users/2147483648",  # beyond PostgreSQL's INTEGER
        "/api/users/99999999999999999999999999",  # beyond SQLite's
        "/api/posts/99999999999999999999999999",
    ],
)
def test_unknown_user_is_404(api, tokens, url):
    response = api.get(url, token=tokens["alice"])
    assert response.status_code == 404
    assert response.json["error"] == "Not Found"


@pytest.mark.parametrize(
    "url",
    [
        "/api/users",
        "/api/users/1",
        "/api/users/1/followers",
        "/api/users/1/following",
        "/api/users/1/posts",
        "/api/timeline",
        "/api/posts/1",
    ],
)
def test_reading_needs_a_token(api, users, url):
    assert api.get(url).status_code == 401


def test_users_collection_pages(api, make_user, users, tokens):
    for n in range(9):
        make_user(f"user{n}")
    body = api.get("/api/users?page=2&per_page=5", token=tokens["alice"]).json
    assert [u["username"] for u in body["items"]] == ["user2", "user3", "user4", "user5", "user6"]
    assert body["_meta"] == {"page": 2, "per_page": 5, "total_pages": 3, "total_items": 12}
    assert body["_links"] == {
        "self": "/api/users?page=2&per_page=5",
        "next": "/api/users?page=3&per_page=5",
        "prev": "/api/users?page=1&per_page=5",
    }
    last = api.get("/api/users?page=3&per_page=5", token=tokens["alice"]).json
    assert len(last["items"]) == 2 and last["_links"]["next"] is None
    beyond = api.get("/api/users?page=9&per_page=5", token=tokens["alice"]).json
    assert beyond["items"] == [] and beyond["_meta"]["total_items"] == 12


def test_users_collection_defaults_and_caps_per_page(api, tokens):
    default = api.get("/api/users", token=tokens["alice"]).json
    assert default["_meta"]["per_page"] == 10 and default["_links"]["prev"] is None
    capped = api.get("/api/users?per_page=5000", token=tokens["alice"]).json
    assert capped["_meta"]["per_page"] == 100
    huge = api.get("/api/users?per_page=" + "9" * 5000, token=tokens["alice"]).json
    assert huge["_meta"]["per_page"] == 100
    assert capped["_links"]["self"] == "/api/users?page=1&per_page=100"


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "page=",
        "page=%EF%BC%93",  # a full-width digit, which int() would accept
        "per_page=0",
        "per_page=x",
        "page=2000000",
        "page=" + "9" * 5000,
    ],
)
@pytest.mark.parametrize("url", ["/api/users", "/api/users/1/posts", "/api/timeline"])
def test_bad_paging_arguments_are_400(api, tokens, url, query):
    response = api.get(f"{url}?{query}", token=tokens["alice"])
    assert response.status_code == 400
    assert "whole number" in response.json["message"]


def test_followers_and_following(app, api, users, tokens):
    follow(app, users["alice"], users["bob"])
    follow(app, users["carol"], users["bob"])
    followers = api.get(f"/api/users/{users['bob']}/followers", token=tokens["alice"]).json
    assert [u["username"] for u in followers["items"]] == ["alice", "carol"]
    assert followers["items"][0]["email"] == "alice@example.com"  # alice sees her own
    assert "email" not in followers["items"][1]
    following = api.get(f"/api/users/{users['alice']}/following", token=tokens["bob"]).json
    assert [u["username"] for u in following["items"]] == ["bob"]
    assert following["_meta"]["total_items"] == 1
    nobody = api.get(f"/api/users/{users['bob']}/following", token=tokens["bob"]).json
    assert nobody["items"] == [] and nobody["_meta"]["total_pages"] == 0


NEW_USER = {"username": "dave", "email": "dave@example.com", "password": "long enough"}


def test_register(app, api, client):
    response = api.post("/api/users", json=NEW_USER)
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/users/{response.json['id']}"
    assert response.json["email"] == "dave@example.com"  # the new owner sees it
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == "dave"))
        assert user.check_password("long enough")
    # The web login accepts the new account.
    login = client.submit("/login", {"username": "dave", "password": "long enough"})
    assert login.status_code == 302


# Each case is also sent to the web form: the API must refuse exactly what it refuses.
INVALID_REGISTRATIONS = {
    "username-taken": ({"username": "alice"}, "username"),
    "email-taken": ({"email": "ALICE@example.com"}, "email"),
    "username-chars": ({"username": "da ve!"}, "username"),
    "username-long": ({"username": "d" * 65}, "username"),
    "username-empty": ({"username": ""}, "username"),
    "email-invalid": ({"email": "not-an-address"}, "email"),
    "email-long": ({"email": "d" * 115 + "@example.com"}, "email"),
    "password-short": ({"password": "short"}, "password"),
    "password-long": ({"password": "p" * 129}, "password"),
}


@pytest.mark.parametrize("change,field", INVALID_REGISTRATIONS.values(), ids=INVALID_REGISTRATIONS)
def test_register_validates_like_the_web_form(app, api, client, users, change, field):
    data = {**NEW_USER, **change}
    response = api.post("/api/users", json=data)
    assert response.status_code == 400
    assert field in response.json["errors"]
    web = client.submit("/register", {**data, "password2": data["password"]})
    assert web.status_code == 400
    message = response.json["errors"][field][0]
    assert message.replace("'", "&#39;") in web.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 3


@pytest.mark.parametrize(
    "body,message",
    [
        ({"username": "dave", "email": "dave@example.com"}, "Missing fields: password."),
        ({**NEW_USER, "is_admin": "yes"}, "Unknown fields: is_admin."),
        ({**NEW_USER, "password": 12345678}, "These fields must be strings: password."),
        ([NEW_USER], "The body must be a JSON object."),
        (None, "The body must be a JSON object."),
    ],
)
def test_register_rejects_malformed_bodies(api, body, message):
    response = api.post("/api/users", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.json["message"] == message


def test_register_lost_race_is_409(app, api, users, monkeypatch):
    """Two requests for one username: the database's unique index decides."""
    import forms

    # The form's own check passes (as for two requests at once); the unique index decides.
    monkeypatch.setattr(forms.NotTaken, "__call__", lambda validator, form, field: None)
    response = api.post("/api/users", json={**NEW_USER, "username": "alice"})
    assert response.status_code == 409
    assert response.json["error"] == "Conflict"


def test_update_own_account(app, api, users, tokens):
    url = f"/api/users/{users['alice']}"
    response = api.put(url, token=tokens["alice"], json={"about_me": "Hi!", "username": "alicia"})
    assert response.status_code == 200
    assert (response.json["username"], response.json["about_me"]) == ("alicia", "Hi!")
    # Unchanged (or re-cased) own values are not "taken".
    response = api.put(url, token=tokens["alice"], json={"email": "Alice@example.com"})
    assert response.status_code == 200
    with app.app_context():
        user = db.session.get(User, users["alice"])
        assert (user.username, user.about_me, user.email) == ("alicia", "Hi!", "Alice@example.com")


def test_update_another_account_is_403(app, api, users, tokens):
    response = api.put(f"/api/users/{users['bob']}", token=tokens["alice"], json={"about_me": "x"})
    assert response.status_code == 403
    with app.app_context():
        assert db.session.get(User, users["bob"]).about_me is None


def test_update_unknown_account_is_404(api, tokens):
    assert api.put("/api/users/999", token=tokens["alice"], json={}).status_code == 404


@pytest.mark.parametrize(
    "body,field",
    [
        ({"username": "bob"}, "username"),
        ({"username": "a b"}, "username"),
        ({"email": "bob@example.com"}, "email"),
        ({"email": "nope"}, "email"),
        ({"about_me": "x" * 141}, "about_me"),
    ],
)
def test_update_validates_like_the_web_forms(app, api, users, tokens, body, field):
    response = api.put(f"/api/users/{users['alice']}", token=tokens["alice"], json=body)
    assert response.status_code == 400
    assert field in response.json["errors"]
    with app.app_context():
        assert db.session.get(User, users["alice"]).username == "alice"


@pytest.mark.parametrize(
    "body", [{"password": "new password"}, {"about_me": 5}, ["about_me"], "text"]
)
def test_update_rejects_malformed_bodies(api, users, tokens, body):
    response = api.put(f"/api/users/{users['alice']}", token=tokens["alice"], json=body)
    assert response.status_code == 400


# --- posts -----------------------------------------------------------------------------------


def test_user_posts_newest_first(app, api, users, tokens):
    add_posts(app, users["bob"], [f"post {n}" for n in range(5)])
    body = api.get(f"/api/users/{users['bob']}/posts?per_page=2", token=tokens["alice"]).json
    assert [p["body"] for p in body["items"]] == ["post 4", "post 3"]
    assert body["items"][0]["author"] == {"id": users["bob"], "username": "bob"}
    assert body["_meta"]["total_pages"] == 3
    assert body["_links"]["next"] == f"/api/users/{users['bob']}/posts?page=2&per_page=2"


def test_timeline_is_own_and_followed_posts(app, api, users, tokens):
    add_posts(app, users["alice"], ["alice says"])
    add_posts(app, users["bob"], ["bob says"])
    add_posts(app, users["carol"], ["carol says"])
    follow(app, users["alice"], users["bob"])
    body = api.get("/api/timeline", token=tokens["alice"]).json
    assert {p["body"] for p in body["items"]} == {"alice says", "bob says"}
    assert body["_meta"]["total_items"] == 2


def test_create_post(app, api, users, tokens):
    response = api.post("/api/posts", token=tokens["alice"], json={"body": "  Hello API  "})
    assert response.status_code == 201
    assert response.json["body"] == "Hello API"
    location = response.headers["Location"]
    assert location == f"/api/posts/{response.json['id']}"
    assert api.get(location, token=tokens["bob"]).json == response.json
    with app.app_context():
        post = db.session.scalar(sa.select(Post))
        assert (post.body, post.user_id) == ("Hello API", users["alice"])


def test_posts_carry_their_language(app, api, users, tokens):
    spanish = "Buenos días a todos, qué día tan bonito para dar un paseo por el parque"
    created = api.post("/api/posts", token=tokens["alice"], json={"body": spanish}).json
    assert created["language"] == "es"
    short = api.post("/api/posts", token=tokens["alice"], json={"body": "ok"}).json
    assert short["language"] is None  # too short to tell
    add_posts(app, users["alice"], ["an imported post, not looked at yet"])
    items = api.get(f"/api/users/{users['alice']}/posts", token=tokens["bob"]).json["items"]
    languages = {item["body"]: item["language"] for item in items}
    assert languages == {spanish: "es", "ok": None, "an imported post, not looked at yet": None}


def test_error_messages_follow_accept_language(api, tokens):
    spanish = {"Accept-Language": "es-ES,es;q=0.9"}
    missing = api.get("/api/posts/12345", token=tokens["alice"], headers=spanish)
    assert missing.status_code == 404
    assert missing.json == {
        "error": "Not Found",
        "message": "No hay ninguna publicación con id 12345.",
    }
    refused = api.post("/api/posts", token=tokens["alice"], json={}, headers=spanish)
    assert refused.json["message"] == "Faltan campos: body."
    assert api.get("/api/posts/12345", token=tokens["alice"]).json["message"] == (
        "No post with id 12345."
    )


@pytest.mark.parametrize(
    "body,status",
    [
        ({"body": ""}, 400),
        ({"body": "   "}, 400),
        ({"body": "x" * 141}, 400),
        ({}, 400),
        ({"body": 5}, 400),
        ({"body": "hi", "user_id": "2"}, 400),
    ],
)
def test_create_post_rejects_bad_bodies(app, api, tokens, body, status):
    response = api.post("/api/posts", token=tokens["alice"], json=body)
    assert response.status_code == status
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Post)) == 0


def test_post_errors_name_the_api_field(api, tokens):
    response = api.post("/api/posts", token=tokens["alice"], json={"body": "x" * 141})
    assert list(response.json["errors"]) == ["body"]  # not the web form's "post"


def test_create_post_counts_a_crlf_as_one_character_and_stores_lf(app, api, tokens):
    body = "\N{GRINNING FACE}\r\n" * 70  # 140 characters, 210 UTF-16 units
    response = api.post("/api/posts", token=tokens["alice"], json={"body": body + "x"})
    assert response.status_code == 400
    response = api.post("/api/posts", token=tokens["alice"], json={"body": body})
    assert response.status_code == 201
    assert response.json["body"] == body.replace("\r\n", "\n").strip()


def test_create_post_accepts_140_characters(api, tokens):
    assert (
        api.post("/api/posts", token=tokens["alice"], json={"body": "x" * 140}).status_code == 201
    )


def test_unknown_post_is_404(api, tokens):
    assert api.get("/api/posts/12345", token=tokens["alice"]).status_code == 404


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,status,message",
    [
        ({"data": "body=hi"}, 415, "Content-Type: application/json"),
        ({"data": "{not json", "content_type": "application/json"}, 400, "not valid JSON"),
        ({"data": "x" * (1024 * 1024 + 1), "content_type": "application/json"}, 413, "limit"),
    ],
    ids=["form-data", "bad-json", "too-large"],
)
@pytest.mark.parametrize("url", ["/api/posts", "/api/users"])
def test_body_errors(api, tokens, url, kwargs, status, message):
    response = api.post(url, token=tokens["alice"], **kwargs)
    assert response.status_code == status
    assert message in response.json["message"]


@pytest.mark.parametrize(
    "method,url,status",
    [
        ("GET", "/api/nothing-here", 404),
        ("GET", "/api", 404),
        ("GET", "/api/users/abc", 404),
        ("POST", "/api/nothing-here", 404),
        ("PATCH", "/api/users", 405),
        ("GET", "/api/tokens", 405),
        ("DELETE", "/api/posts", 405),
    ],
)
def test_unknown_api_urls_get_json_errors(api, method, url, status):
    response = api.open(method, url)
    assert_json_error(response, status)
    assert response.json["error"] in ("Not Found", "Method Not Allowed")


def test_html_pages_keep_html_errors(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_unexpected_error_is_json_500(app, api, tokens):
    def broken(**_kwargs):
        raise RuntimeError("boom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.view_functions["api.get_post"] = broken
    response = api.client.get(
        "/api/posts/1", headers={"Authorization": f"Bearer {tokens['alice']}"}
    )
    assert response.status_code == 500
    assert response.json == {
        "error": "Internal Server Error",
        "message": "An unexpected error occurred.",
    }


# --- the OpenAPI document ---------------------------------------------------------------------


def test_openapi_document_is_served(api):
    response = api.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.json["openapi"].startswith("3.")
    assert response.json == api_document()


def test_every_api_route_is_documented_and_nothing_else(app):
    routes = {
        (spec_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method) for path, item in api_document()["paths"].items() for method in item
    }
    assert routes == documented


def test_document_limits_come_from_the_forms():
    schemas = api_document()["components"]["schemas"]
    assert schemas["NewUser"]["properties"]["username"]["maxLength"] == 64
    assert schemas["NewUser"]["properties"]["password"]["minLength"] == 8
    assert schemas["NewPost"]["properties"]["body"]["maxLength"] == 140


# --- background tasks over the API ------------------------------------------------------------


def start_task(api, token, name="export_posts"):
    return api.post("/api/tasks", token=token, json={"name": name})


def test_export_task_over_the_api(app, api, users, tokens, immediate):
    add_posts(app, users["alice"], ["first", "second"])
    add_posts(app, users["bob"], ["not alice's"])
    response = start_task(api, tokens["alice"])
    assert response.status_code == 202
    task = response.json
    assert response.headers["Location"] == f"/api/tasks/{task['id']}"
    # Immediate mode ran it already; the row says so.
    task = api.get(response.headers["Location"], token=tokens["alice"]).json
    assert (task["name"], task["status"], task["progress"]) == ("export_posts", "done", 100)
    assert task["description"] == "Exporting your posts"
    assert task["finished_at"] >= task["started_at"] >= task["created_at"]
    with api.get(task["_links"]["download"], token=tokens["alice"]) as download:
        assert download.status_code == 200
        assert download.headers["Content-Disposition"] == "attachment; filename=posts.json"
        assert [p["body"] for p in download.json["posts"]] == ["first", "second"]
        assert task["result_size"] == len(download.data)


def test_second_task_while_one_is_active_is_a_conflict(app, api, users, tokens):
    # Not immediate: the first export stays queued (no worker runs in this test).
    first = start_task(api, tokens["alice"])
    assert first.status_code == 202 and first.json["status"] == "queued"
    assert "download" not in first.json["_links"]
    second = start_task(api, tokens["alice"])
    assert second.status_code == 409
    assert second.json["task"]["id"] == first.json["id"]
    assert start_task(api, tokens["bob"]).status_code == 202  # one per user, not per site
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Task.id))) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "delete_everything"}, "Unknown task 'delete_everything'"),
        ({}, "name"),
        ({"name": "export_posts", "extra": 1}, "extra"),
    ],
)
def test_bad_task_requests(app, api, tokens, body, message):
    response = api.post("/api/tasks", token=tokens["alice"], json=body)
    assert response.status_code == 400
    assert message in json.dumps(response.json)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Task.id))) == 0


def test_tasks_need_a_token(api, users):
    assert api.post("/api/tasks", json={"name": "export_posts"}).status_code == 401
    assert api.get("/api/tasks").status_code == 401


def test_task_history_is_your_own(app, api, users, tokens, immediate):
    mine = start_task(api, tokens["alice"]).json["id"]
    theirs = start_task(api, tokens["bob"]).json["id"]
    history = api.get("/api/tasks", token=tokens["alice"]).json
    assert [t["id"] for t in history["items"]] == [mine]
    assert history["_meta"]["total_items"] == 1
    for url in (f"/api/tasks/{theirs}", f"/api/tasks/{theirs}/download", "/api/tasks/no-such-task"):
        response = api.get(url, token=tokens["alice"])
        assert response.status_code == 404, url
    assert api.post(f"/api/tasks/{theirs}/cancel", token=tokens["alice"]).status_code == 404
    with app.app_context():
        assert db.session.get(Task, theirs).status == "done"


def test_cancel_a_queued_task(app, api, users, tokens):
    task_id = start_task(api, tokens["alice"]).json["id"]
    response = api.post(f"/api/tasks/{task_id}/cancel", token=tokens["alice"])
    assert response.status_code == 200
    assert response.json["status"] == "cancelled"
    again = api.post(f"/api/tasks/{task_id}/cancel", token=tokens["alice"])
    assert again.status_code == 409
    assert again.json["task"]["status"] == "cancelled"
    assert start_task(api, tokens["alice"]).status_code == 202  # free to start another


def test_download_before_the_task_finished(api, users, tokens):
    task_id = start_task(api, tokens["alice"]).json["id"]
    response = api.get(f"/api/tasks/{task_id}/download", token=tokens["alice"])
    assert response.status_code == 409
    assert response.json["task"]["status"] == "queued"


def test_import_task_with_an_uploaded_file(app, api, users, tokens, immediate):
    archive = {"posts": [{"body": "imported", "timestamp": "2024-05-01T12:00:00Z"}]}
    response = api.post(
        "/api/tasks",
        token=tokens["alice"],
        data={"name": "import_posts", "file": (io.BytesIO(json.dumps(archive).encode()), "p.json")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202
    task = api.get(response.headers["Location"], token=tokens["alice"]).json
    assert (task["name"], task["status"]) == ("import_posts", "done")
    assert task["message"] == "Imported 1 post."
    assert [p["body"] for p in exported_posts(app, users["alice"])] == ["imported"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "export_posts", "file": (io.BytesIO(b"{}"), "p.json")}, "Unknown task"),
        ({"name": "import_posts"}, "Missing the uploaded file"),
        ({"name": "import_posts", "file": "not a file"}, "Missing the uploaded file"),
    ],
)
def test_bad_upload_task_requests(app, api, tokens, data, message):
    response = api.post(
        "/api/tasks", token=tokens["alice"], data=data, content_type="multipart/form-data"
    )
    assert response.status_code == 400
    assert message in response.json["message"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Task.id))) == 0


@pytest.mark.parametrize(
    ("method", "url", "data", "spanish"),
    [
        (
            "POST",
            "/api/tasks",
            {"name": "export_posts", "file": (io.BytesIO(b"{}"), "p.json")},
            "Tarea desconocida 'export_posts' para un archivo subido; tareas conocidas: "
            "import_posts.",
        ),
        (
            "POST",
            "/api/tasks",
            {"name": "import_posts"},
            "Falta el archivo subido (campo de formulario 'file').",
        ),
        ("GET", "/api/tasks/no-such-task", None, "No hay ninguna tarea con id no-such-task."),
    ],
    ids=["unknown-upload-task", "missing-file", "unknown-task"],
)
def test_task_errors_follow_accept_language(api, tokens, method, url, data, spanish):
    kwargs = {"data": data, "content_type": "multipart/form-data"} if data else {}
    headers = {"Accept-Language": "es-ES,es;q=0.9"}
    response = api.open(method, url, token=tokens["alice"], headers=headers, **kwargs)
    assert response.status_code in (400, 404)
    assert response.json["message"] == spanish


def test_openapi_documents_the_upload(api):
    body = api.document["paths"]["/api/tasks"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    schema = api.document["components"]["schemas"]["NewUploadTask"]
    assert schema["required"] == ["name", "file"]


def test_download_of_an_expired_export_is_gone(app, api, users, tokens, immediate):
    task_id = start_task(api, tokens["alice"]).json["id"]
    with app.app_context():
        db.session.get(Task, task_id).expires_at = utcnow()
        db.session.commit()
    task = api.get(f"/api/tasks/{task_id}", token=tokens["alice"]).json
    assert "download" not in task["_links"]
    assert api.get(f"/api/tasks/{task_id}/download", token=tokens["alice"]).status_code == 404


# --- clients written for the tutorial's API ----------------------------------------------


def test_register_with_about_me(app, api):
    response = api.post("/api/users", json={**NEW_USER, "about_me": "Hello, I am Dave."})
    assert response.status_code == 201
    assert response.json["about_me"] == "Hello, I am Dave."
    with app.app_context():
        assert User.by_username(NEW_USER["username"]).about_me == "Hello, I am Dave."


def test_register_refuses_unknown_fields_by_name(api):
    response = api.post("/api/users", json={**NEW_USER, "shoe_size": "44"})
    assert response.status_code == 400
    assert response.json["message"] == "Unknown fields: shoe_size."


@pytest.mark.parametrize("about_me", [None, "Old words"])
def test_put_back_the_whole_fetched_user(app, api, users, tokens, about_me):
    """GET a user, change about_me, PUT the object back: read-only fields are ignored."""
    with app.app_context():
        db.session.get(User, users["alice"]).about_me = about_me
        db.session.commit()
    url = f"/api/users/{users['alice']}"
    fetched = api.get(url, token=tokens["alice"]).json
    assert fetched["about_me"] == about_me and "_links" in fetched and "id" in fetched
    fetched["about_me"] = "New words"
    response = api.put(url, token=tokens["alice"], json=fetched)
    assert response.status_code == 200
    assert response.json["about_me"] == "New words"
    with app.app_context():
        user = db.session.get(User, users["alice"])
        assert (user.username, user.about_me) == ("alice", "New words")


def test_put_back_ignores_forged_read_only_values(app, api, users, tokens):
    url = f"/api/users/{users['alice']}"
    body = {"id": users["bob"], "post_count": 999, "about_me": "still me"}
    response = api.put(url, token=tokens["alice"], json=body)
    assert response.status_code == 200
    assert (response.json["id"], response.json["post_count"]) == (users["alice"], 0)


def test_null_about_me_clears_it(app, api, users, tokens):
    url = f"/api/users/{users['alice']}"
    api.put(url, token=tokens["alice"], json={"about_me": "something"})
    response = api.put(url, token=tokens["alice"], json={"about_me": None})
    assert response.status_code == 200
    with app.app_context():
        assert not db.session.get(User, users["alice"]).about_me


def test_put_still_refuses_unknown_fields(api, users, tokens):
    url = f"/api/users/{users['alice']}"
    response = api.put(url, token=tokens["alice"], json={"about_me": "x", "is_admin": "yes"})
    assert response.status_code == 400
    assert response.json["message"] == "Unknown fields: is_admin."


# --- closed registration and disabled accounts -------------------------------------------------


def test_closed_registration_refuses_api_sign_ups(app, api):
    app.config["MICROBLOG_REGISTRATION"] = "closed"
    body = {"username": "eve", "email": "eve@example.com", "password": PASSWORD}
    response = api.post("/api/users", json=body)
    assert response.status_code == 403
    assert "Registration is closed" in response.get_json()["message"]
    with app.app_context():
        assert db.session.scalar(User.named("eve")) is None
    app.config["MICROBLOG_REGISTRATION"] = "open"
    assert api.post("/api/users", json=body).status_code == 201


def test_a_disabled_account_gets_no_token_and_its_tokens_stop(app, api, users, tokens):
    assert api.get("/api/timeline", token=tokens["bob"]).status_code == 200
    with app.app_context():
        administration.disable(db.session.get_one(User, users["bob"]))
        db.session.commit()
    assert api.get("/api/timeline", token=tokens["bob"]).status_code == 401
    assert api.post("/api/tokens", basic=("bob", PASSWORD)).status_code == 401
    assert api.get("/api/timeline", token=tokens["alice"]).status_code == 200
