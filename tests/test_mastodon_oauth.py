"""OAuth 2 for Mastodon apps: registering an app, the three grants, PKCE, scopes,
revocation, the authorize page's decisions, and every way a user takes access back."""

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa

import administration
from database import db
from models import User
from oauth_store import OAuthCode, OAuthToken
from tests.conftest import PASSWORD
from tests.mastodon_support import OOB, bearer, make_app, make_token, pkce_pair

CALLBACK = "https://app.example/callback"


def token_rows(app, user_id=None):
    with app.app_context():
        query = sa.select(sa.func.count(OAuthToken.id))
        if user_id:
            query = query.where(OAuthToken.user_id == user_id)
        return db.session.scalar(query)


def password_grant(client, client_id, secret, username="alice", password=PASSWORD, **extra):
    data = {
        "grant_type": "password",
        "client_id": client_id,
        "client_secret": secret,
        "username": username,
        "password": password,
        **extra,
    }
    return client.post("/oauth/token", data=data)


# --- registering apps ---------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True])
def test_register_app_as_form_or_json(client, as_json):
    fields = {
        "client_name": "Tooter",
        "redirect_uris": f"{OOB} {CALLBACK}",
        "scopes": "read write:statuses",
        "website": "https://tooter.example",
    }
    response = (
        client.post("/api/v1/apps", json=fields)
        if as_json
        else client.post("/api/v1/apps/", data=fields)  # a trailing slash is the same
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert body["name"] == "Tooter"
    assert body["redirect_uris"] == [OOB, CALLBACK]
    assert body["scopes"] == ["read", "write:statuses"]
    assert len(body["client_secret"]) > 30 and body["client_id"]
    assert isinstance(body["id"], str)


@pytest.mark.parametrize(
    "fields",
    [
        {"redirect_uris": OOB},  # no name
        {"client_name": "x", "redirect_uris": "not a uri"},
        {"client_name": "x", "redirect_uris": OOB, "scopes": "read admin:everything"},
        {"client_name": "x" * 500, "redirect_uris": OOB},
        {"client_name": ["a", "list"], "redirect_uris": OOB},
    ],
)
def test_bad_app_registrations_are_422(client, fields):
    response = client.post("/api/v1/apps", json=fields)
    assert response.status_code == 422
    assert response.json["error"]


def test_client_secret_is_stored_hashed(app, client):
    secret = client.post("/api/v1/apps", data={"client_name": "a", "redirect_uris": OOB}).json[
        "client_secret"
    ]
    with app.app_context():
        stored = db.session.execute(sa.text("SELECT secret_hash FROM oauth_app")).scalar()
    assert secret not in stored and len(stored) == 64


# --- the password and client-credentials grants ------------------------------------------


def test_password_grant_as_mastodon_py_sends_it(app, client, users):
    client_id, secret = make_app(app)
    response = password_grant(client, client_id, secret, scope="read write")
    assert response.status_code == 200, response.json
    token = response.json
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "read write"
    assert isinstance(token["created_at"], int)
    me = client.get("/api/v1/accounts/verify_credentials", headers=bearer(token["access_token"]))
    assert me.status_code == 200
    assert me.json["username"] == "alice"
    with app.app_context():  # only the hash is kept
        stored = db.session.scalar(sa.select(OAuthToken.token_hash))
    assert token["access_token"] not in stored


def test_password_grant_as_json_with_the_email_address(app, client, users):
    client_id, secret = make_app(app)
    response = client.post(
        "/oauth/token",
        json={
            "grant_type": "password",
            "client_id": client_id,
            "client_secret": secret,
            "username": "alice@example.com",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 200, response.json
    assert response.json["scope"] == "read write follow push"  # the app's, when none asked


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"password": "wrong password"}, "invalid_request"),
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"scope": "read admin:read"}, "invalid_scope"),
        ({"grant_type": "implicit"}, "unsupported_grant_type"),
    ],
)
def test_password_grant_refusals(app, client, users, change, error):
    client_id, secret = make_app(app, scopes="read write")
    data = {
        "grant_type": "password",
        "client_id": client_id,
        "client_secret": secret,
        "username": "alice",
        "password": PASSWORD,
        **change,
    }
    response = client.post("/oauth/token", data=data)
    assert 400 <= response.status_code < 500
    assert response.json["error"] == error
    assert token_rows(app) == 0


def test_a_scope_the_app_did_not_register_is_refused(app, client, users):
    client_id, secret = make_app(app, scopes="read")
    response = password_grant(client, client_id, secret, scope="read write")
    assert response.status_code == 400
    assert response.json["error"] == "invalid_scope"


@pytest.mark.parametrize("app_config", [{"SIGN_IN_LIMIT_PER_USER": 2}])
def test_password_grant_is_throttled_like_the_sign_in_form(app, client, users):
    client_id, secret = make_app(app)
    for _ in range(2):
        assert password_grant(client, client_id, secret, password="nope").status_code == 400
    refused = password_grant(client, client_id, secret)  # even the right password now
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert token_rows(app) == 0


def test_client_credentials_token_is_for_the_app_alone(app, client, users):
    client_id, secret = make_app(app, scopes="read write")
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "read",
        },
    )
    assert response.status_code == 200, response.json
    token = response.json["access_token"]
    app_info = client.get("/api/v1/apps/verify_credentials", headers=bearer(token))
    assert app_info.status_code == 200
    assert app_info.json["name"] == "Test app"
    assert "client_secret" not in app_info.json
    me = client.get("/api/v1/accounts/verify_credentials", headers=bearer(token))
    assert me.status_code == 422
    assert me.json == {"error": "This method requires an authenticated user"}
    assert client.get("/api/v1/timelines/public", headers=bearer(token)).status_code == 200


# --- scopes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "method", "path", "allowed"),
    [
        ("read", "post", "/api/v1/statuses", False),
        ("read", "get", "/api/v1/timelines/home", True),
        ("read:statuses", "get", "/api/v1/timelines/home", True),
        ("read:accounts", "get", "/api/v1/timelines/home", False),
        ("write:statuses", "post", "/api/v1/statuses", True),
        ("write", "post", "/api/v1/statuses", True),
        ("read write", "post", "/api/v1/accounts/2/follow", True),
        ("follow", "post", "/api/v1/accounts/2/follow", True),
        ("read", "post", "/api/v1/accounts/2/follow", False),
        ("write:statuses", "get", "/api/v1/notifications", False),
        ("push", "get", "/api/v1/accounts/verify_credentials", False),
    ],
)
def test_scopes_are_enforced_per_endpoint(app, client, users, scope, method, path, allowed):
    token = make_token(app, users["alice"], scope)
    kwargs = {"json": {"status": "scoped"}} if path == "/api/v1/statuses" else {}
    response = getattr(client, method)(path, headers=bearer(token), **kwargs)
    if allowed:
        assert response.status_code == 200, response.json
    else:
        assert response.status_code == 403
        assert response.json == {"error": "This action is outside the authorized scopes"}


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic YWxpY2U6eA=="])
def test_no_or_bad_token_is_401(client, users, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/timelines/home", headers=headers)
    assert response.status_code == 401
    assert response.json["error"]


# --- authorization code + PKCE (the page's decisions; the page itself in Chromium) -----------


def authorize_url(client_id, redirect_uri, **extra):
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "read write",
        **extra,
    }
    return "/oauth/authorize?" + urlencode(query)


def test_authorize_asks_to_sign_in_first(app, client):
    client_id, _secret = make_app(app, redirect_uris=(CALLBACK,))
    response = client.get(authorize_url(client_id, CALLBACK))
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_authorization_code_with_pkce(app, client, auth):
    client_id, secret = make_app(app, redirect_uris=(CALLBACK,))
    verifier, challenge = pkce_pair()
    url = authorize_url(
        client_id, CALLBACK, state="xyz", code_challenge=challenge, code_challenge_method="S256"
    )
    auth.login()
    page = client.get(url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Test app" in html and "<code>write</code>" in html
    # The page's forms may lead on to the app (CSP form-action), and nowhere else.
    assert "form-action 'self' https://app.example" in page.headers["Content-Security-Policy"]
    approved = client.submit(url, {"approve": "1"})
    assert approved.status_code == 302
    location = urlsplit(approved.headers["Location"])
    assert location.netloc == "app.example"
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    code = query["code"][0]
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uri": CALLBACK,
    }
    wrong = client.post("/oauth/token", data={**exchange, "code_verifier": "x" * 50})
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_grant"
    missing = client.post("/oauth/token", data=exchange)
    assert missing.status_code == 400
    token = client.post("/oauth/token", json={**exchange, "code_verifier": verifier})
    assert token.status_code == 200, token.json
    assert token.json["scope"] == "read write"
    again = client.post("/oauth/token", data={**exchange, "code_verifier": verifier})
    assert again.status_code == 400  # a code works once
    me = client.get(
        "/api/v1/accounts/verify_credentials", headers=bearer(token.json["access_token"])
    )
    assert me.json["username"] == "alice"


def test_denying_sends_the_app_access_denied(app, client, auth):
    client_id, _secret = make_app(app, redirect_uris=(CALLBACK,))
    url = authorize_url(client_id, CALLBACK, state="s1")
    auth.login()
    denied = client.submit(url, {"deny": "1"})
    query = parse_qs(urlsplit(denied.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["s1"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(OAuthCode.id))) == 0


def test_out_of_band_shows_the_code(app, client, auth):
    client_id, secret = make_app(app)
    url = authorize_url(client_id, OOB)
    auth.login()
    page = client.submit(url, {"approve": "1"})
    assert page.status_code == 200
    code = re.search(r'id="code"[^>]*value="([^"]+)"', page.get_data(as_text=True)).group(1)
    token = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": OOB,
        },
    )
    assert token.status_code == 200, token.json


def test_approving_needs_the_csrf_token(app, client, auth):
    client_id, _secret = make_app(app, redirect_uris=(CALLBACK,))
    auth.login()
    response = client.post(authorize_url(client_id, CALLBACK), data={"approve": "1"})
    assert response.status_code == 400  # the "form expired" page; no code
    assert "Location" not in response.headers
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(OAuthCode.id))) == 0


@pytest.mark.parametrize(
    "change",
    [
        {"client_id": "nobody"},
        {"redirect_uri": "https://evil.example/steal"},
        {"response_type": "token"},
        {"scope": "admin:write"},
    ],
)
def test_bad_authorize_requests_never_redirect(app, client, auth, change):
    client_id, _secret = make_app(app, redirect_uris=(CALLBACK,))
    auth.login()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": "read",
        **change,
    }
    response = client.get("/oauth/authorize?" + urlencode(query))
    if response.status_code == 302:  # an invalid scope goes back to the (registered) app
        assert response.headers["Location"].startswith(CALLBACK)
        assert "error=invalid_scope" in response.headers["Location"]
    else:
        assert response.status_code == 400
        assert "evil.example" not in response.headers.get("Location", "")


# --- taking access back --------------------------------------------------------------------------


def test_revoke_endpoint(app, client, users):
    client_id, secret = make_app(app)
    token = password_grant(client, client_id, secret).json["access_token"]
    response = client.post(
        "/oauth/revoke", data={"client_id": client_id, "client_secret": secret, "token": token}
    )
    assert response.status_code == 200
    assert client.get("/api/v1/timelines/home", headers=bearer(token)).status_code == 401


def test_another_app_cannot_revoke_a_token(app, client, users):
    client_id, secret = make_app(app)
    other_id, other_secret = make_app(app, name="Other")
    token = password_grant(client, client_id, secret).json["access_token"]
    client.post(
        "/oauth/revoke", data={"client_id": other_id, "client_secret": other_secret, "token": token}
    )
    assert client.get("/api/v1/timelines/home", headers=bearer(token)).status_code == 200


def test_settings_lists_the_app_and_revokes_it(app, client, auth, users):
    token = make_token(app, users["alice"])
    other = make_token(app, users["bob"])
    auth.login()
    page = client.get("/settings").get_data(as_text=True)
    assert "Token app" in page
    action = re.search(r'action="(/settings/apps/\d+/revoke)"', page).group(1)
    assert client.post(action).status_code == 400  # no CSRF token: nothing happens
    assert client.get("/api/v1/timelines/home", headers=bearer(token)).status_code == 200
    response = client.submit(action, follow_redirects=True)
    assert response.status_code == 200
    assert client.get("/api/v1/timelines/home", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/timelines/home", headers=bearer(other)).status_code == 200
    assert "Token app" not in client.get("/settings").get_data(as_text=True)


def test_revoking_another_users_app_is_404(app, client, auth, users):
    make_token(app, users["bob"])
    with app.app_context():
        app_id = db.session.scalar(sa.select(OAuthToken.app_id))
    auth.login()
    assert client.submit(f"/settings/apps/{app_id}/revoke").status_code == 404
    assert token_rows(app, users["bob"]) == 1


def test_changing_the_password_revokes_app_tokens(app, client, auth, users):
    token = make_token(app, users["alice"])
    bobs = make_token(app, users["bob"])
    auth.login()
    client.submit(
        "/settings/password",
        {"current_password": PASSWORD, "password": "a new password", "password2": "a new password"},
    )
    assert client.get("/api/v1/timelines/home", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/timelines/home", headers=bearer(bobs)).status_code == 200


def test_sign_out_everywhere_revokes_app_tokens(app, client, auth, users):
    token = make_token(app, users["alice"])
    auth.login()
    client.submit("/settings/sign_out_everywhere")
    assert client.get("/api/v1/timelines/home", headers=bearer(token)).status_code == 401
    assert token_rows(app, users["alice"]) == 0


def test_a_disabled_account_s_tokens_stop_working(app, client, users):
    token = make_token(app, users["alice"])
    with app.app_context():
        administration.disable(db.session.get(User, users["alice"]))
        db.session.commit()
    assert client.get("/api/v1/timelines/home", headers=bearer(token)).status_code == 401


def test_server_metadata(client):
    response = client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.json
    assert metadata["token_endpoint"].endswith("/oauth/token")
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert {"read", "write", "follow", "push", "read:statuses"} <= set(metadata["scopes_supported"])
    assert "password" in metadata["grant_types_supported"]


@pytest.mark.parametrize("app_config", [{"APP_REGISTRATION_LIMIT_PER_IP": 2}])
def test_app_registrations_are_throttled_per_address(client):
    fields = {"client_name": "spam", "redirect_uris": OOB}
    assert [client.post("/api/v1/apps", data=fields).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    refused = client.post("/api/v1/apps", data=fields)
    assert int(refused.headers["Retry-After"]) > 0 and "Too many new apps" in refused.json["error"]


ODD_BODIES = [
    ("application/json", '{"grant_type": "password", "username": "\\ud800", "password": "x"}'),
    ("application/json", "[" * 1000 + "]" * 1000),
    ("application/json", '{"grant_type": ' + "[" * 1000 + "]" * 1000 + "}"),
    ("application/json", '{"client_id": ' + "9" * 5000 + "}"),
    ("application/json", ""),
    ("application/octet-stream", b"\xff\xfe\x00binary"),
    ("application/x-www-form-urlencoded", "grant_type=password&client_id=" + "a" * 10000),
]


@pytest.mark.parametrize(("content_type", "body"), ODD_BODIES)
@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/revoke", "/api/v1/apps"])
def test_odd_bodies_to_the_oauth_endpoints_are_4xx(app, client, users, path, content_type, body):
    response = client.post(path, data=body, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    assert response.json["error"]
    assert token_rows(app) == 0


def test_pkce_plain_is_refused(app, client, auth):
    client_id, _secret = make_app(app, redirect_uris=(CALLBACK,))
    auth.login()
    url = authorize_url(client_id, CALLBACK, code_challenge="x" * 50, code_challenge_method="plain")
    response = client.get(url)
    assert response.status_code == 400
    assert "code_challenge_method" in response.get_data(as_text=True)
