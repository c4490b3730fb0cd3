"""Password reset by email, end to end against a real SMTP server."""

import re

import pytest

import account_links
from database import db
from models import User
from tests.conftest import PASSWORD

NEW_PASSWORD = "a brand new password"
SITE_URL = "https://microblog.example.org"


@pytest.fixture(autouse=True)
def run_tasks_inline(immediate):
    """The reset mail is a background task: run it in the test's thread. (A real consumer
    and a slow mail server are in test_mail_queue.py.)"""
    return immediate


@pytest.fixture
def app_config(request):
    """Point the app at the test's SMTP server; tests that don't take one get no mail."""
    if "smtp_server" in request.fixturenames:
        smtp = request.getfixturevalue("smtp_server")
        return {"MAIL_SERVER": smtp.host, "MAIL_PORT": smtp.port, "SITE_URL": SITE_URL}
    if "dead_smtp_port" in request.fixturenames:
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": request.getfixturevalue("dead_smtp_port")}
    return {}


@pytest.fixture
def dead_smtp_port():
    from tests.live import free_port

    return free_port()  # nothing listens there


def reset_link_from(message) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(re.escape(SITE_URL) + r"(/reset_password/\S+)", text).group(1)


def request_reset(client, email="alice@example.com"):
    return client.submit("/reset_password_request", {"email": email})


def test_reset_password_end_to_end(client, auth, smtp_server):
    response = request_reset(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"

    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "[Microblog] Reset your password"
    link = reset_link_from(message)
    assert link in message.get_body(preferencelist=("html",)).get_content()

    assert client.get(link).status_code == 200
    response = client.submit(link, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"

    assert auth.login("alice", PASSWORD).status_code == 401
    assert auth.login("alice", NEW_PASSWORD).status_code == 302
    auth.logout()

    # Single use: the password changed, so the same link no longer works.
    response = client.get(link, follow_redirects=True)
    assert "invalid, expired or already used" in response.get_data(as_text=True)
    response = client.submit(link, {"password": "yet another pw", "password2": "yet another pw"})
    assert response.headers["Location"] == "/reset_password_request"
    assert auth.login("alice", NEW_PASSWORD).status_code == 302


def test_unknown_address_gets_the_same_answer_and_no_mail(client, users, smtp_server):
    known = request_reset(client, "alice@example.com")
    unknown = request_reset(client, "nobody@example.com")
    assert known.status_code == unknown.status_code == 302
    assert known.headers["Location"] == unknown.headers["Location"]
    page = client.get("/login").get_data(as_text=True)
    assert "Check your email for the instructions" in page
    assert [m["To"] for m in smtp_server.messages] == ["alice@example.com"]


def test_address_match_ignores_case(client, users, smtp_server):
    request_reset(client, "Alice@Example.COM")
    assert [m["To"] for m in smtp_server.messages] == ["alice@example.com"]


@pytest.mark.parametrize("email", ["", "not-an-email", "x" * 200 + "@example.com"])
def test_reset_request_rejects_bad_addresses(client, users, smtp_server, email):
    response = request_reset(client, email)
    assert response.status_code == 400
    assert smtp_server.messages == []


def test_expired_token_is_refused(app, users, monkeypatch):
    with app.test_request_context():
        user = db.session.get(User, users["alice"])
        token = account_links.reset_password_token(user)
        assert account_links.user_from_reset_token(token) == user
        monkeypatch.setattr(account_links, "RESET_TOKEN_MAX_AGE", -1)
        assert account_links.user_from_reset_token(token) is None


@pytest.mark.parametrize("token", ["garbage", "", "a.b.c", "eyJpZCI6MX0.x.y"])
def test_forged_tokens_are_refused(client, users, token):
    response = client.get(f"/reset_password/{token}")
    assert response.status_code in (302, 404)
    if response.status_code == 302:
        assert response.headers["Location"] == "/reset_password_request"


def test_token_signed_with_another_key_is_refused(app, users):
    with app.test_request_context():
        user = db.session.get(User, users["alice"])
        token = account_links.reset_password_token(user)
        app.config["SECRET_KEY"] = "another key"
        assert account_links.user_from_reset_token(token) is None


def test_mismatched_new_passwords_are_refused(app, client, users):
    with app.test_request_context():
        token = account_links.reset_password_token(db.session.get(User, users["alice"]))
    response = client.submit(
        f"/reset_password/{token}", {"password": NEW_PASSWORD, "password2": "different"}
    )
    assert response.status_code == 400
    assert "Passwords must match." in response.get_data(as_text=True)


def test_without_mail_server_the_reset_is_logged_not_sent(client, users, caplog):
    caplog.set_level("INFO", logger="microblog.mail")
    response = request_reset(client)
    assert response.status_code == 302
    assert "Mail not configured" in caplog.text


def test_smtp_failure_does_not_break_the_page(dead_smtp_port, client, users, caplog):
    response = request_reset(client)
    assert response.status_code == 302
    assert "Could not send the password reset email" in caplog.text
