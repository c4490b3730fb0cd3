"""The federation endpoints, the Mastodon client API and OAuth tried as an attacker would,
against a real gunicorn on a database migrated with Alembic: odd numbers, odd text, odd
bodies. Every answer is below 500, and the server log has no traceback (the `gunicorn`
helper checks it when the server stops)."""

import io
import json
import secrets
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa

import federation_in
import fedfetch
from database import db, utcnow
from microblog import create_app
from models import Post, User, hash_api_token
from oauth_store import OAuthApp, OAuthCode, OAuthToken
from tests.mastodon_support import OOB, bearer, make_app, make_token
from tests.test_api_fuzz import data_dir as data_dir  # noqa: F401  (the migrated data dir)
from tests.test_api_fuzz import database_url, gunicorn

SITE = "http://microblog.test"
ODD_NUMBERS = [str(10**30), "-1", "1e9", "\ud800", "\u0663", "\u00b2", "0x10", " 1", ""]
ACTIVITY_JSON = "application/activity+json"
LOOKUPS = 3  # remote account lookups a user may ask for in the window


@pytest.fixture(scope="module")
def server(data_dir):  # noqa: F811
    app = create_app({"DATA_DIR": str(data_dir), "SQLALCHEMY_DATABASE_URI": database_url(data_dir)})
    with app.app_context():
        fuzzer = db.session.scalar(db.select(User).where(User.username == "fuzzer"))
        db.session.add(Post(body="hello @pager", author=fuzzer))
        db.session.commit()
        user_id = fuzzer.id
    token = make_token(app, user_id)
    settings = {
        "SITE_URL": SITE,
        "FEDERATION_ALLOW_HTTP": True,
        "APP_REGISTRATION_LIMIT_PER_IP": 1000000,
        "API_TOKEN_LIMIT_PER_IP": 1000000,
        "FEDERATION_LOOKUP_LIMIT_PER_USER": LOOKUPS,
    }
    with gunicorn(data_dir, f"microblog:create_app({settings!r})", "--workers", "2") as url:
        yield {"url": url, "token": token, "user_id": user_id, "app": app}
    with app.app_context():
        db.engine.dispose()


def call(server, method, path, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("allow_redirects", False)
    return requests.request(method, server["url"] + path, **kwargs)


def assert_no_crash(response):
    assert response.status_code < 500, (response.request.url, response.text[:2000])
    assert "Traceback" not in response.text


@pytest.mark.parametrize("number", ODD_NUMBERS)
@pytest.mark.parametrize(
    "template",
    [
        "/actors/{n}",
        "/actors/{n}/outbox",
        "/actors/{n}/followers",
        "/actors/{n}/following",
        "/actors/1/outbox?page={n}",
        "/actors/1/followers?page={n}",
        "/post/{n}",
        "/.well-known/webfinger?resource=" + SITE + "/actors/{n}",
        "/.well-known/webfinger?resource=acct:{n}@microblog.test",
        "/user/{n}",
        "/user/{n}@example.com",
    ],
)
def test_odd_numbers_in_federation_urls(server, template, number):
    response = call(server, "GET", template.format(n=number), headers={"Accept": ACTIVITY_JSON})
    assert_no_crash(response)


@pytest.mark.parametrize("number", ODD_NUMBERS)
@pytest.mark.parametrize(
    "template",
    [
        "/api/v1/timelines/home?limit={n}",
        "/api/v1/timelines/home?max_id={n}",
        "/api/v1/timelines/public?since_id={n}",
        "/api/v1/timelines/public?min_id={n}",
        "/api/v1/notifications?limit={n}&max_id={n}",
        "/api/v1/conversations?limit={n}",
        "/api/v1/accounts/{n}",
        "/api/v1/accounts/1/statuses?limit={n}&max_id={n}",
        "/api/v1/accounts/1/followers?limit={n}",
        "/api/v1/accounts/relationships?id[]={n}",
        "/api/v1/statuses/{n}",
        "/api/v1/statuses/{n}/context",
        "/api/v1/notifications/{n}",
        "/api/v2/search?q=a&offset={n}",
        "/api/v2/search?q=a&limit={n}",
        "/api/v1/markers?timeline[]={n}",
        "/api/v1/accounts/lookup?acct={n}",
        "/api/v1/microblog/tasks/{n}",
    ],
)
def test_odd_numbers_in_api_queries(server, template, number):
    response = call(server, "GET", template.format(n=number), headers=bearer(server["token"]))
    assert_no_crash(response)


DEEP = "[" * 100_000 + "]" * 100_000
ODD_BODIES = [
    ("application/json", b""),
    ("application/json", b"{"),
    ("application/json", b"[1, 2]"),
    ("application/json", b'"text"'),
    ("application/json", b"null"),
    ("application/json", DEEP.encode()),
    ("application/json", b'{"a": ' * 5000 + b"1" + b"}" * 5000),
    ("application/json", b'{"status": "\\ud800", "name": "\\ud800", "client_name": "\\ud800"}'),
    ("application/json", b'{"status": ["a"], "client_name": {"a": 1}, "redirect_uris": 7}'),
    ("application/json", b'{"limit": 1e400, "id": 100000000000000000000000000000}'),
    ("application/json", b"\xff\xfe\x00binary"),
    ("application/x-www-form-urlencoded", b"status=%ED%A0%80&client_name=%ff%fe"),
    ("application/x-www-form-urlencoded", b"a[b][c][d]=1&" * 1000),
    ("multipart/form-data; boundary=x", b"--x\r\nbroken"),
    ("text/plain", b"\x00\x01\x02"),
    ("application/activity+json", b'{"type": "Create", "object": []}'),
]


@pytest.mark.parametrize("content_type,body", ODD_BODIES, ids=range(len(ODD_BODIES)))
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/statuses",
        "/api/v1/apps",
        "/api/v1/markers",
        "/api/v1/accounts/1/follow",
        "/api/v1/statuses/1/favourite",
        "/api/v1/notifications/clear",
        "/api/v1/conversations/1/read",
        "/api/v1/accounts/update_credentials",
        "/api/v2/media",
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/authorize",
        "/inbox",
        "/actors/1/inbox",
        "/user/fuzzer/inbox",
    ],
)
def test_odd_bodies(server, path, content_type, body):
    headers = {"Content-Type": content_type, **bearer(server["token"])}
    method = "PATCH" if path.endswith("update_credentials") else "POST"
    response = call(server, method, path, data=body, headers=headers)
    assert_no_crash(response)


@pytest.mark.parametrize(
    "query",
    [
        "resource=",
        "resource=acct:",
        "resource=acct:@",
        "resource=%ED%A0%80",
        "resource=acct:%00@microblog.test",
        "resource=http://[::1",
        "resource=" + "a" * 20000,
        "resource=acct:fuzzer@microblog.test&resource=x",
    ],
)
def test_odd_webfinger_resources(server, query):
    assert_no_crash(call(server, "GET", "/.well-known/webfinger?" + query))


@pytest.mark.parametrize(
    "query",
    [
        "response_type=code&client_id=%ED%A0%80&redirect_uri=x",
        "response_type=code&client_id=" + "a" * 10000,
        "response_type=token&client_id=x",
        "response_type=code&client_id=x&redirect_uri=%00&scope=%ff",
        "client_id[]=x",
    ],
)
def test_odd_authorize_queries(server, query):
    assert_no_crash(call(server, "GET", "/oauth/authorize?" + query))


@pytest.mark.parametrize(
    "fields",
    [
        {"grant_type": "password", "username": "\ud800", "password": "x", "client_id": "x"},
        {"grant_type": "authorization_code", "code": "x" * 10000, "client_id": "x"},
        {"grant_type": "client_credentials", "client_id": "\u0663", "client_secret": "\ud800"},
        {"grant_type": "refresh_token", "refresh_token": "x"},
        {"grant_type": ["a", "b"]},
    ],
)
def test_odd_token_requests(server, fields):
    # Lone surrogates travel as a JSON escape and as the UTF-8 bytes they would have.
    form = urllib.parse.urlencode(fields, doseq=True, errors="surrogatepass")
    bodies = [("application/x-www-form-urlencoded", form), ("application/json", json.dumps(fields))]
    for content_type, body in bodies:
        response = call(
            server, "POST", "/oauth/token", data=body, headers={"Content-Type": content_type}
        )
        assert_no_crash(response)
        assert response.status_code in (400, 401, 429), response.text


def approved_code(app, user_id) -> tuple[str, str, str]:
    """An app and an authorization code its user approved: (client_id, secret, code)."""
    client_id, secret = make_app(app)
    code = secrets.token_urlsafe(32)
    with app.app_context():
        oauth_app = db.session.scalar(sa.select(OAuthApp).where(OAuthApp.client_id == client_id))
        db.session.add(
            OAuthCode(
                code_hash=hash_api_token(code),
                app_id=oauth_app.id,
                user_id=user_id,
                redirect_uri=OOB,
                scope="read",
                expires_at=utcnow() + timedelta(minutes=5),
            )
        )
        db.session.commit()
    return client_id, secret, code


def test_an_authorization_code_gives_one_token_however_many_ask_at_once(server):
    """Two workers, four threads each: every exchange of one code reads the code before
    any deletes it; only the one that deletes it may have a token."""
    app = server["app"]
    for _round in range(5):
        client_id, secret, code = approved_code(app, server["user_id"])
        exchange = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": OOB,
        }
        with ThreadPoolExecutor(8) as pool:
            asking = [
                pool.submit(call, server, "POST", "/oauth/token", data=exchange) for _ in range(8)
            ]
            answers = [future.result() for future in asking]
        for answer in answers:
            assert_no_crash(answer)
        assert sum(answer.status_code == 200 for answer in answers) == 1, [
            (answer.status_code, answer.text) for answer in answers
        ]
        with app.app_context():
            tokens = (
                sa.select(sa.func.count(OAuthToken.id))
                .join(OAuthApp)
                .where(OAuthApp.client_id == client_id)
            )
            assert db.session.scalar(tokens) == 1


@pytest.mark.parametrize(
    "last_read_id", ["\u0663\u0663", 10**30, "1" * 19, -1, "1e9", True, "\u00b2", [1], {"a": 1}]
)
def test_a_marker_is_an_id_or_a_422(server, last_read_id):
    token = bearer(server["token"])
    before = call(server, "GET", "/api/v1/markers?timeline[]=home", headers=token).json()
    response = call(
        server,
        "POST",
        "/api/v1/markers",
        json={"home": {"last_read_id": last_read_id}},
        headers=token,
    )
    assert response.status_code == 422, response.text
    after = call(server, "GET", "/api/v1/markers?timeline[]=home", headers=token).json()
    assert after == before


def test_api_lookups_of_remote_accounts_are_throttled_as_the_search_page_s(server):
    """Each makes this server ask another (here a name that never resolves)."""
    token = make_token(server["app"], server["user_id"])
    query = "/api/v2/search?resolve=true&q=" + urllib.parse.quote("@someone@nowhere.invalid")
    answers = [call(server, "GET", query, headers=bearer(token)) for _ in range(LOOKUPS + 1)]
    assert [answer.status_code for answer in answers] == [200] * LOOKUPS + [429]
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert "Too many" in answers[-1].json()["error"]


@pytest.mark.parametrize("visibility", ["private", "\u0663", "PUBLIC", ["public"], 1])
def test_a_status_that_would_not_be_public_as_asked_is_refused(server, visibility):
    """Every post here is public: a followers-only status (or one of no known visibility)
    is a 422, not published for everyone and sent to other servers."""
    token = bearer(server["token"])
    text = f"meant for few {secrets.token_hex(4)}"
    response = call(
        server,
        "POST",
        "/api/v1/statuses",
        json={"status": text, "visibility": visibility},
        headers=token,
    )
    assert response.status_code == 422, response.text
    mine = f"/api/v1/accounts/{server['user_id']}/statuses?limit=40"
    assert text not in call(server, "GET", mine, headers=token).text


@pytest.mark.parametrize("visibility", ["public", "unlisted", "", None])
def test_public_and_unlisted_statuses_are_published(server, visibility):
    fields = {"status": f"for all {secrets.token_hex(4)}", "visibility": visibility}
    response = call(
        server, "POST", "/api/v1/statuses", json=fields, headers=bearer(server["token"])
    )
    assert response.status_code == 200, response.text
    assert response.json()["visibility"] == "public"


@pytest.mark.parametrize("path", ["/inbox", "/actors/1/inbox", "/api/v1/statuses", "/oauth/token"])
@pytest.mark.parametrize("chunked", [False, True])
def test_huge_bodies_are_refused(server, path, chunked):
    """4 MiB, with a Content-Length or chunked (no length said up front)."""
    block = b"{" + b" " * (64 * 1024 - 1)
    body = (block for _ in range(64)) if chunked else block * 64
    headers = {"Content-Type": "application/json", **bearer(server["token"])}
    response = call(server, "POST", path, data=body, headers=headers)
    assert_no_crash(response)
    assert 400 <= response.status_code < 500, response.text[:500]


@pytest.mark.parametrize(
    "published",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "99999-01-01", "\ud800", 10**30],
)
def test_a_note_published_at_an_impossible_moment_is_dated_now(published):
    """Such a date was an OverflowError in the worker (retried, a traceback each time)."""
    before = utcnow()
    assert federation_in._published({"published": published}) >= before


class Answer(io.BytesIO):
    """What fedfetch reads of another server's answer: headers and a body."""

    def __init__(self, body: bytes, content_length: str):
        super().__init__(body)
        self.headers = {"content-length": content_length}


@pytest.mark.parametrize("content_length", ["\u00b2", "\u0663", "1e9", "-1", ""])
def test_another_server_s_odd_content_length_is_no_crash(content_length):
    """Its body is still read up to the limit, whatever length it claims."""
    deadline = time.monotonic() + 30
    assert fedfetch._read_capped(Answer(b"{}", content_length), 1024, deadline=deadline) == b"{}"
    with pytest.raises(fedfetch.FetchError):
        fedfetch._read_capped(Answer(b"x" * 2048, content_length), 1024, deadline=deadline)


def test_an_authorization_code_works_once_on_postgresql(pg_app):
    """The spending DELETE counts its row on PostgreSQL too."""
    with pg_app.app_context():
        alice = db.session.scalar(sa.select(User.id).where(User.username == "alice"))
    client_id, secret, code = approved_code(pg_app, alice)
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uri": OOB,
    }
    client = pg_app.test_client()
    assert client.post("/oauth/token", data=exchange).status_code == 200
    again = client.post("/oauth/token", data=exchange)
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"
    with pg_app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(OAuthToken.id))) == 1
