"""`flask --app microblog user …`, run as an admin would: a real `flask` process, the password
piped in on standard input."""

import pytest
import sqlalchemy as sa

import administration
from database import db
from models import ApiToken, User
from tests.conftest import PASSWORD
from tests.helpers import add_posts
from tests.mastodon_support import bearer, make_token

NEW_PASSWORD = "a brand new password"


def user_row(app, username):
    with app.app_context():
        user = db.session.scalar(User.named(username))
        if user is not None:
            db.session.expunge(user)
        return user


def test_create_an_admin_with_a_piped_password(app, flask_cli):
    app.config["MICROBLOG_REGISTRATION"] = "closed"  # the command does not care
    result = flask_cli(
        "user", "create", "root", "root@example.com", "--admin",
        stdin=PASSWORD + "\n", MICROBLOG_REGISTRATION="closed",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Created admin user root.\n"
    root = user_row(app, "root")
    assert root.is_admin and not root.disabled
    assert root.check_password(PASSWORD) and root.password_hash != PASSWORD

    result = flask_cli("user", "create", "plain", "plain@example.com", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert not user_row(app, "plain").is_admin


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (("bad name", "x@example.com"), PASSWORD, "username: Use letters, digits"),
        (("x" * 65, "x@example.com"), PASSWORD, "username: Field must be between 1 and 64"),
        (("alice", "new@example.com"), PASSWORD, "username: That username is taken."),
        (("dave", "ALICE@example.com"), PASSWORD, "email: That email address is already"),
        (("dave", "not-an-email"), PASSWORD, "email: Invalid email address."),
        (("dave", "dave@example.com"), "short", "password: Field must be between 8 and 128"),
        (("dave", "dave@example.com"), None, "No password on standard input."),
    ],
)
def test_create_refuses_bad_input_and_creates_nobody(
    app, users, flask_cli, args, password, message
):
    stdin = "" if password is None else password + "\n"
    result = flask_cli("user", "create", *args, stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 3


def test_set_password_lets_the_user_in_without_mail(app, client, users, flask_cli):
    client.submit("/login", {"username": "alice", "password": PASSWORD})
    with app.app_context():
        api_token, _row = ApiToken.issue(db.session.get_one(User, users["alice"]))
        db.session.commit()
    app_token = make_token(app, users["alice"])
    bob_token = make_token(app, users["bob"])
    result = flask_cli("user", "set-password", "alice", stdin=NEW_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Changed the password of alice.\n"
    assert client.get("/index").status_code == 302  # the old browser session is signed out
    assert client.get("/api/users", headers=bearer(api_token)).status_code == 401
    verify = "/api/v1/accounts/verify_credentials"
    assert client.get(verify, headers=bearer(app_token)).status_code == 401
    assert client.get(verify, headers=bearer(bob_token)).status_code == 200  # others' stay
    response = client.submit("/login", {"username": "alice", "password": NEW_PASSWORD})
    assert response.status_code == 302
    assert not user_row(app, "alice").check_password(PASSWORD)

    result = flask_cli("user", "set-password", "alice", stdin="short\n")
    assert result.returncode == 1 and "password: Field must be between 8" in result.stderr
    result = flask_cli("user", "set-password", "nobody", stdin=NEW_PASSWORD + "\n")
    assert result.returncode == 1
    assert "Error: There is no user called 'nobody'." in result.stderr


def test_disable_and_enable(app, client, users, flask_cli):
    client.submit("/login", {"username": "bob", "password": PASSWORD})
    with app.app_context():
        ApiToken.issue(db.session.get_one(User, users["bob"]))
        db.session.commit()
    result = flask_cli("user", "disable", "bob")
    assert (result.returncode, result.stdout) == (0, "Disabled bob.\n")
    assert user_row(app, "bob").disabled
    assert client.get("/index").status_code == 302  # signed out
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ApiToken.id))) == 0

    result = flask_cli("user", "enable", "bob")
    assert (result.returncode, result.stdout) == (0, "Enabled bob.\n")
    assert not user_row(app, "bob").disabled


def test_delete_asks_unless_told_yes(app, users, flask_cli):
    add_posts(app, users["bob"], 3)
    result = flask_cli("user", "delete", "bob", stdin="n\n")
    assert result.returncode == 1 and "Aborted" in result.stderr
    assert user_row(app, "bob") is not None

    result = flask_cli("user", "delete", "bob", stdin="y\n")
    assert result.returncode == 0, result.stderr
    assert "Deleted bob." in result.stdout
    assert user_row(app, "bob") is None

    result = flask_cli("user", "delete", "carol", "--yes")
    assert (result.returncode, result.stdout) == (0, "Deleted carol.\n")


LAST_ADMIN = "Error: That is the last enabled admin: make another account an admin first.\n"


@pytest.mark.parametrize("command", [("disable", "root"), ("delete", "root", "--yes")])
def test_the_last_enabled_admin_stays(app, users, admin, flask_cli, command):
    with app.app_context():  # a disabled admin does not count: it cannot sign in
        administration.make_admin(db.session.get_one(User, users["bob"]))
        administration.disable(db.session.get_one(User, users["bob"]))
        db.session.commit()

    result = flask_cli("user", *command)

    assert (result.returncode, result.stdout, result.stderr) == (1, "", LAST_ADMIN)
    root = user_row(app, "root")
    assert root is not None and root.is_admin and not root.disabled
    # With another enabled admin, it goes through.
    assert flask_cli("user", "enable", "bob").returncode == 0
    result = flask_cli("user", *command)
    assert result.returncode == 0, result.stderr
    assert user_row(app, "root") is None or user_row(app, "root").disabled


def test_a_site_without_an_enabled_admin_can_still_disable_and_delete(app, users, flask_cli):
    with app.app_context():
        administration.make_admin(db.session.get_one(User, users["bob"]))
        administration.disable(db.session.get_one(User, users["bob"]))
        db.session.commit()
    assert flask_cli("user", "disable", "alice").returncode == 0
    assert flask_cli("user", "delete", "bob", "--yes").returncode == 0
    assert user_row(app, "bob") is None


def test_list(app, users, admin, flask_cli):
    with app.app_context():
        administration.disable(db.session.get_one(User, users["bob"]))
        db.session.commit()
    result = flask_cli("user", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{users['alice']}\talice\talice@example.com\tuser\tactive",
        f"{users['bob']}\tbob\tbob@example.com\tuser\tdisabled",
        f"{users['carol']}\tcarol\tcarol@example.com\tuser\tactive",
        f"{admin}\troot\troot@example.com\tadmin\tactive",
    ]


def test_help_lists_the_commands(flask_cli):
    result = flask_cli("--help")
    for command in ("user", "backup", "restore"):
        assert f"\n  {command} " in result.stdout
    result = flask_cli("user", "--help")
    for command in ("create", "set-password", "disable", "enable", "delete", "list"):
        assert f"\n  {command} " in result.stdout
