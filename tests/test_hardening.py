"""Safe to open to the internet, checked in-process: sessions, headers and cookies, odd
input, throttled pages, the proxy setting and the admins' error mails."""

import json
import logging
from html.parser import HTMLParser
from logging.handlers import SMTPHandler
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

import account_links
from database import db
from models import ApiToken, Message, Post, User, followers
from tests.conftest import PASSWORD
from tests.helpers import add_posts
from tests.live import CSRF_FIELD

# --- sessions ------------------------------------------------------------------------------


def test_end_all_sessions_rotates_the_generation_and_drops_api_tokens(app, users):
    with app.app_context():
        alice = db.session.get(User, users["alice"])
        ApiToken.issue(alice)
        db.session.commit()
        old_id = alice.get_id()
        assert User.from_session_id(old_id) == alice
        alice.end_all_sessions()
        db.session.commit()
        assert alice.get_id() != old_id and alice.get_id().startswith(f"{alice.id}:")
        assert User.from_session_id(old_id) is None
        assert User.from_session_id(alice.get_id()) == alice
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


@pytest.mark.parametrize("session_id", ["1", "1:", "x:y", "99999999999999999999:a", ":", ""])
def test_odd_or_old_session_ids_name_nobody(app, users, session_id):
    with app.app_context():
        assert User.from_session_id(session_id) is None


def test_a_cookie_from_before_revocable_sessions_signs_nobody_in(client, users):
    with client.session_transaction() as session:
        session["_user_id"] = str(users["alice"])  # what the cookie held before
        session["_fresh"] = True
    assert client.get("/index").status_code == 302


def test_csrf_token_is_renewed_at_sign_in(client, auth):
    before = CSRF_FIELD.search(client.get("/login").get_data(as_text=True)).group(1)
    auth.login()
    # The token from the signed-out page no longer works.
    response = client.post("/index", data={"post": "hello", "csrf_token": before})
    assert response.status_code == 400
    assert "Your form expired" in response.get_data(as_text=True)
    with client.session_transaction() as session:
        assert "csrf_token" in session
    assert client.submit("/index", {"post": "hello"}).status_code == 302


def test_wrong_current_password_is_refused_and_throttled(app, client, auth):
    app.config.update(SIGN_IN_LIMIT_PER_USER=3)
    auth.login()  # one attempt counted
    data = {
        "current_password": "wrong",
        "password": "new password 1",
        "password2": "new password 1",
    }
    statuses = [client.submit("/settings/password", data).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
    with app.app_context():
        assert db.session.get(User, 1).check_password(PASSWORD)


def test_settings_page_offers_all_three(client, auth):
    auth.login()
    html = client.get("/settings").get_data(as_text=True)
    for name in ("current_password", "password", "password2", "email"):
        assert f'name="{name}"' in html
    assert 'id="password-current_password"' in html and 'id="email-current_password"' in html
    assert "/settings/sign_out_everywhere" in html


def test_email_taken_meanwhile_is_a_409(app, client, users):
    with app.test_request_context():
        alice = db.session.get(User, users["alice"])
        token = account_links.email_change_token(alice, "new@example.com")
        db.session.get(User, users["bob"]).email = "new@example.com"
        db.session.commit()
    response = client.submit(f"/confirm_email/{token}")
    assert response.status_code == 409
    with app.app_context():
        assert db.session.get(User, users["alice"]).email == "alice@example.com"


@pytest.mark.parametrize("token", ["garbage", "a.b.c"])
def test_forged_confirmation_links_change_nothing(client, users, token):
    response = client.get(f"/confirm_email/{token}")
    assert response.status_code == 302 and response.headers["Location"] == "/index"


# --- headers and cookies ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/index", "/api/openapi.json", "/nowhere"])
def test_every_response_carries_the_browser_protections(client, auth, path):
    auth.login()
    headers = client.get(path).headers
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_pages_have_no_inline_script(client, auth, app):
    auth.login()
    add_posts(app, 1, 2)
    for path in ("/index", "/user/alice", "/messages", "/settings", "/tasks"):
        html = client.get(path).get_data(as_text=True)
        assert " onsubmit=" not in html and " onclick=" not in html
        for tag in html.split("<script")[1:]:
            assert tag.split(">")[0].strip().startswith("src="), tag[:80]


def set_cookie_headers(response) -> dict:
    return {h.split("=")[0]: h for h in response.headers.getlist("Set-Cookie")}


def test_cookies_are_samesite_lax_and_not_secure_over_http(client, auth):
    response = auth.login(remember_me="y")
    cookies = set_cookie_headers(response)
    for name in ("session", "remember_token"):
        assert "SameSite=Lax" in cookies[name] and "HttpOnly" in cookies[name]
        assert "Secure" not in cookies[name]


@pytest.mark.parametrize("app_config", [{"SITE_URL": "https://microblog.example.org"}])
def test_cookies_are_secure_when_the_site_is_https(client, auth):
    response = auth.login(remember_me="y")
    cookies = set_cookie_headers(response)
    assert "Secure" in cookies["session"] and "Secure" in cookies["remember_token"]


# --- a forged request is refused, and never offered again ---------------------------------------

# What another site's form sends along: nothing of it may come back on our page.
ATTACKER_TEXT = "sent-by-evil-example"


def forged_request(app, users, admin, action) -> tuple[str, dict]:
    """The URL and fields of a cross-site form that would make the signed-in admin act."""
    if action == "delete":
        add_posts(app, admin, ["the admin's own post"])
        with app.app_context():
            post_id = db.session.scalar(sa.select(Post.id))
        return f"/post/{post_id}/delete", {"reason": ATTACKER_TEXT}
    return {
        "make-admin": (f"/admin/users/{users['bob']}/make-admin", {"note": ATTACKER_TEXT}),
        "follow": ("/follow/bob", {"submit": ATTACKER_TEXT}),
        "post": ("/index", {"post": ATTACKER_TEXT}),
        "message": ("/send_message/bob", {"message": ATTACKER_TEXT}),
    }[action]


def site_state(app) -> dict:
    """Everything the forged requests could change."""
    with app.app_context():
        return {
            "posts": db.session.scalars(sa.select(Post.body).order_by(Post.id)).all(),
            "messages": db.session.scalars(sa.select(Message.body)).all(),
            "follows": db.session.execute(sa.select(followers)).all(),
            "admins": db.session.scalars(sa.select(User.id).where(User.is_admin)).all(),
        }


class FormActions(HTMLParser):
    """The `action` of each form on a page, as a path."""

    def __init__(self, html: str):
        super().__init__()
        self.actions: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "form":
            self.actions.append(urlsplit(dict(attrs).get("action") or "").path)


@pytest.mark.parametrize("token", [None, "forged"], ids=["no-token", "wrong-token"])
@pytest.mark.parametrize("cookies", ["session", "remember-me only"])
@pytest.mark.parametrize("action", ["make-admin", "follow", "post", "message", "delete"])
def test_a_forged_request_is_refused_and_not_offered_again(
    app, client, users, admin, action, cookies, token
):
    """The friendly "form expired" page repeats none of what was sent and has no button
    that would send it again (with a fresh token, one click would have done the attack)."""
    path, fields = forged_request(app, users, admin, action)
    client.submit("/login", {"username": "root", "password": PASSWORD, "remember_me": "y"})
    if cookies == "remember-me only":
        client.delete_cookie("session")
    before = site_state(app)
    data = fields if token is None else {**fields, "csrf_token": token}
    response = client.post(path, data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'href="/admin/"' in html  # the page is the signed-in admin's, as in the attack
    assert "Your form expired" in html
    assert ATTACKER_TEXT not in html
    assert path not in FormActions(html).actions
    assert site_state(app) == before


# --- the client address behind a proxy ---------------------------------------------------------


@pytest.mark.parametrize(
    ("app_config", "counted_as"),
    [({"TRUSTED_PROXIES": 1}, "203.0.113.9"), ({}, "127.0.0.1")],
)
def test_trusted_proxies_decide_whose_address_is_counted(app, client, users, counted_as):
    client.submit(
        "/login",
        {"username": "alice", "password": "wrong"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    with app.app_context():
        keys = set(db.session.scalars(sa.text("SELECT key FROM rate_limit_hit")))
    assert keys == {f"sign-in:ip:{counted_as}", f"sign-in:ip:{counted_as}:alice"}


# --- odd input: 4xx, never 500 ----------------------------------------------------------------

HUGE = "99999999999999999999"
PAGED = ["/index", "/explore", "/user/alice", "/tasks", "/messages", "/search?q=post"]


@pytest.mark.parametrize("path", PAGED)
def test_huge_page_numbers_are_404_on_every_paged_page(client, auth, path):
    auth.login()
    separator = "&" if "?" in path else "?"
    response = client.get(f"{path}{separator}page={HUGE}")
    assert response.status_code == 404
    assert f"There is no page {HUGE}" in response.get_data(as_text=True)
    assert client.get(f"{path}{separator}page=2").status_code == 200


def test_huge_post_id_is_404(client, auth):
    auth.login()
    assert client.submit(f"/post/{HUGE}/delete").status_code == 404


# Every page that reads a whole number from the query, and a value it takes.
NUMBER_ARGS = {
    "/index/new_posts?after=": "0",
    "/messages/newer?after=": "0",
    "/send_message/bob?reply_to=": "1",
    "/avatar_urls?size=": "64",
}
ODD_NUMBERS = {
    "20 digits": HUGE,
    "negative huge": f"-{HUGE}",
    "past 64 bits": str(2**63),
    "not a number": "abc",
    "lone surrogate": "%ED%A0%80",
    "other digits": "%D9%A3",  # ٣, a digit to int() but not to the database
    "empty": "",
}


@pytest.mark.parametrize("value", ODD_NUMBERS.values(), ids=list(ODD_NUMBERS))
@pytest.mark.parametrize("url", NUMBER_ARGS)
def test_odd_numbers_in_the_query_are_a_400_that_says_which(client, auth, url, value):
    auth.login()
    response = client.get(url + value)
    assert response.status_code == 400
    name = url.split("?")[1].rstrip("=")
    assert f"&#39;{name}&#39; must be a whole number" in response.get_data(as_text=True)


@pytest.mark.parametrize("value", ["{}", "-{}", "9" * 18, "-" + "9" * 18])
@pytest.mark.parametrize("url", NUMBER_ARGS)
def test_whole_numbers_of_up_to_18_digits_are_taken(client, auth, url, value):
    auth.login()
    assert client.get(url + value.format(NUMBER_ARGS[url])).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/admin/users/{HUGE}/delete"),
        ("POST", f"/admin/users/{HUGE}/delete"),
        ("POST", f"/admin/users/{HUGE}/make-admin"),
    ],
)
def test_huge_ids_in_admin_urls_are_404(client, admin, method, path):
    client.submit("/login", {"username": "root", "password": PASSWORD})
    response = client.get(path) if method == "GET" else client.submit(path)
    assert response.status_code == 404


def test_huge_ids_in_the_session_are_nobody(client, users):
    with client.session_transaction() as session:
        session["_user_id"] = f"{HUGE}:abc"
    assert client.get("/index").status_code == 302
    assert client.get("/notifications").status_code == 302


@pytest.mark.parametrize(
    "body",
    [
        '{"username": "eve", "email": "eve@example.com", "password": "\\ud800\\udc00\\ud800 1234"}',
        '{"username": "e\\udfffve", "email": "eve@example.com", "password": "long enough"}',
        '{"\\ud800": "x", "username": "eve", "email": "eve@example.com", "password": "pw"}',
        "[" * 1000 + "]" * 1000,
        '{"username": ' + "[" * 1000 + "]" * 1000 + "}",
        '{"username": ' + "9" * 5000 + "}",
    ],
    ids=["surrogate-password", "surrogate-username", "surrogate-key", "deep", "deep-field", "huge"],
)
def test_odd_json_is_a_400(client, users, body):
    response = client.post("/api/users", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["message"]


# --- throttled pages say so ---------------------------------------------------------------------


def test_throttled_sign_in_page_says_how_long_to_wait(app, client, users):
    app.config.update(SIGN_IN_LIMIT_PER_USER=2)
    for _ in range(2):
        client.submit("/login", {"username": "alice", "password": "wrong"})
    response = client.submit("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 300
    assert "Too many sign-in attempts from your address" in response.get_data(as_text=True)


def test_unknown_and_known_usernames_check_a_password_hash_alike(client, users, monkeypatch):
    import models

    checked = []
    real = models.check_password_hash

    def counting(hash_, password):
        checked.append(hash_)
        return real(hash_, password)

    monkeypatch.setattr(models, "check_password_hash", counting)
    client.submit("/login", {"username": "alice", "password": "wrong"})
    client.submit("/login", {"username": "nobody", "password": "wrong"})
    assert len(checked) == 2
    # The same hashing method and cost for both (the decoy is not a cheaper hash).
    assert checked[0].split("$")[0] == checked[1].split("$")[0]


# --- error mails to the admins ------------------------------------------------------------------


@pytest.fixture
def failing_app(app, smtp_server):
    """A production-like app (not TESTING) that mails errors to an admin, with a page that
    fails."""
    from microblog import create_app

    failing = create_app(
        {
            "DATA_DIR": app.config["DATA_DIR"],
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "MAIL_SERVER": smtp_server.host,
            "MAIL_PORT": smtp_server.port,
            "ADMINS": ["admin@example.com"],
        }
    )

    @failing.route("/boom")
    def boom():
        raise RuntimeError("boom")

    yield failing
    with failing.app_context():
        db.engine.dispose()
    # Flask's logger is shared by every app of this name: leave no mailing handler behind.
    for handler in [h for h in failing.logger.handlers if isinstance(h, SMTPHandler)]:
        failing.logger.removeHandler(handler)


def test_the_same_error_is_mailed_once_not_once_per_request(failing_app, smtp_server):
    client = failing_app.test_client()
    statuses = [client.get("/boom").status_code for _ in range(10)]
    assert statuses == [500] * 10
    assert len(smtp_server.messages) == 1
    assert "RuntimeError: boom" in smtp_server.messages[0].get_content()


def test_a_different_error_gets_its_own_mail(failing_app, smtp_server):
    from error_mail import OncePerInterval

    once = OncePerInterval(300)

    def record(message, line):
        return logging.LogRecord("microblog", logging.ERROR, "x.py", line, message, (), None)

    assert once.filter(record("first", 1))
    assert not once.filter(record("first", 1))
    assert once.filter(record("second", 2))
    once.interval = 0
    assert once.filter(record("first", 1))


def test_json_error_bodies_stay_json(client):
    response = client.post("/api/users", data="[" * 1000, content_type="application/json")
    assert response.status_code == 400
    json.loads(response.get_data(as_text=True))
