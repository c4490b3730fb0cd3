"""Registration, login, logout, open redirects and CSRF."""

import pytest
import sqlalchemy as sa

from database import db
from models import Post, User
from tests.conftest import PASSWORD


def user_count(app):
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(User.id)))


def test_register_creates_user_with_hashed_password(client, app):
    response = client.submit(
        "/register",
        {
            "username": "dave",
            "email": "dave@example.com",
            "password": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.username == "dave"))
        assert user.email == "dave@example.com"
        assert user.password_hash != PASSWORD
        assert user.check_password(PASSWORD)


GOOD = {
    "username": "dave",
    "email": "dave@example.com",
    "password": PASSWORD,
    "password2": PASSWORD,
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"username": ""}, "This field is required."),
        ({"username": "x" * 65}, "Field must be between 1 and 64 characters long."),
        ({"username": "bad name!"}, "Use letters, digits"),
        ({"username": "alice"}, "That username is taken."),
        ({"email": ""}, "This field is required."),
        ({"email": "not-an-email"}, "Invalid email address."),
        ({"email": "ALICE@example.com"}, "That email address is already registered."),
        ({"email": "a" * 120 + "@example.com"}, "Field cannot be longer than 120 characters."),
        ({"password": ""}, "This field is required."),
        ({"password": "short", "password2": "short"}, "Field must be between 8 and 128"),
        ({"password2": "something else"}, "Passwords must match."),
    ],
)
def test_register_rejects_bad_input(client, app, users, changes, message):
    before = user_count(app)
    response = client.submit("/register", {**GOOD, **changes})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert user_count(app) == before


def test_login_and_logout(client, auth):
    response = auth.login()
    assert response.status_code == 302
    assert response.headers["Location"] == "/index"
    assert client.get("/index").status_code == 200
    response = auth.logout()
    assert response.status_code == 302
    assert client.get("/index").status_code == 302


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password"), ("nobody", PASSWORD), ("ALICE", PASSWORD)],
)
def test_login_rejects_bad_credentials(client, auth, username, password):
    response = auth.login(username, password)
    assert response.status_code == 401
    assert "Invalid username or password." in response.get_data(as_text=True)
    assert client.get("/index").status_code == 302


@pytest.mark.parametrize("field", ["username", "password"])
def test_login_requires_both_fields(client, auth, field):
    response = client.submit("/login", {"username": "alice", "password": PASSWORD, field: ""})
    assert response.status_code == 400
    assert "This field is required." in response.get_data(as_text=True)


def test_remember_me_sets_a_persistent_cookie(client, auth):
    auth.login(remember_me="y")
    assert client.get_cookie("remember_token") is not None


def test_without_remember_me_there_is_no_persistent_cookie(client, auth):
    auth.login()
    assert client.get_cookie("remember_token") is None


def test_logout_is_post_only(client, auth):
    auth.login()
    assert client.get("/logout").status_code == 405
    assert client.get("/index").status_code == 200


def test_pages_require_login_and_come_back_after_it(client, users):
    response = client.get("/explore")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fexplore"
    response = client.submit("/login?next=%2Fexplore", {"username": "alice", "password": PASSWORD})
    assert response.headers["Location"] == "/explore"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "/\\/evil.example",
        "http://evil.example/",
        "https://evil.example/index",
        "javascript:alert(1)",
        "evil.example",
        "\\\\evil.example",
        " //evil.example",
        "/\t/evil.example",
    ],
)
def test_login_never_redirects_off_site(client, users, target):
    response = client.submit(
        "/login", {"username": "alice", "password": PASSWORD}, query_string={"next": target}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/index"


def test_csrf_token_is_required_for_posts(client, auth, app):
    auth.login()
    response = client.post("/index", data={"post": "no token"})
    assert response.status_code == 400
    assert "Your form expired" in response.get_data(as_text=True)
    response = client.post("/index", data={"post": "bad token", "csrf_token": "forged"})
    assert response.status_code == 400
    assert "Your form expired" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Post)) == 0


def test_expired_form_links_to_the_blank_form(client, auth, app):
    """A post typed into a page whose token went stale is not shown again (another site
    could have sent it): the page links to the form, which opens empty with a fresh token."""
    auth.login()
    response = client.post("/index", data={"post": "typed with care", "csrf_token": "stale"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "typed with care" not in html
    assert '<a href="/index">Open the form again</a>' in html
    response = client.get("/index")
    assert response.status_code == 200 and "typed with care" not in response.get_data(as_text=True)
    assert client.submit("/index", {"post": "typed again"}).status_code == 302
    with app.app_context():
        assert db.session.scalars(sa.select(Post.body)).all() == ["typed again"]


def test_expired_form_echoes_nothing_that_was_typed(client, users):
    data = {"username": "alice-typed", "password": "s3cret-typed", "remember_me": "y"}
    response = client.post("/login", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "alice-typed" not in html and "s3cret-typed" not in html
    assert '<a href="/login">Open the form again</a>' in html


def test_expired_form_of_a_button_links_nowhere_but_home(client, auth):
    """A button's request (follow) has no page of its own to open again."""
    auth.login()
    html = client.post("/follow/bob", data={"csrf_token": "stale"}).get_data(as_text=True)
    assert "Open the form again" not in html and "/follow/bob" not in html
    assert "Back to the home page" in html


def test_logout_without_csrf_token_keeps_the_session(client, auth):
    auth.login()
    response = client.post("/logout")
    assert response.status_code == 400
    assert client.get("/index").status_code == 200


def test_logged_in_users_skip_login_and_register(client, auth):
    auth.login()
    for url in ("/login", "/register", "/reset_password_request"):
        response = client.get(url)
        assert response.status_code == 302
        assert response.headers["Location"] == "/index"
