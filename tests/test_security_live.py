"""Open to the internet, tried as an attacker would: a real gunicorn, a real SMTP server,
`requests` sessions whose cookies are copied, and clients from distinct loopback addresses
(Linux routes all of 127.0.0.0/8 to the loopback interface, so gunicorn on 127.0.0.1 sees
each client's own source address).
"""

import re
import socket
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from tests.conftest import PASSWORD
from tests.live import CSRF_FIELD, wait_for

SITE_URL = "http://microblog.test"  # what mailed links must use, whatever the Host header says
NEW_PASSWORD = "a brand new password"


class SourceAddressAdapter(HTTPAdapter):
    """Connections from a chosen local address, such as 127.0.0.2."""

    def __init__(self, source_address: str):
        self.source_address = source_address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source_address, 0)
        super().init_poolmanager(*args, **kwargs)


class Client(requests.Session):
    """A browser without JavaScript, from `address`: cookies, forms with their CSRF token."""

    def __init__(self, base_url: str, address: str = "127.0.0.1"):
        super().__init__()
        self.base_url = base_url
        self.mount("http://", SourceAddressAdapter(address))

    def page(self, path, **kwargs):
        return self.get(self.base_url + path, **kwargs)

    def submit(self, path, data=None, token_from="/login", **kwargs):
        data = dict(data or {})
        html = self.page(token_from).text
        data.setdefault("csrf_token", CSRF_FIELD.search(html).group(1))
        return self.post(self.base_url + path, data=data, allow_redirects=False, **kwargs)

    def forged_host(self, host="evil.example") -> dict:
        """Headers claiming another Host. (requests would then match cookies against that
        host, so this session's cookies go in by hand.)"""
        cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.cookies)
        return {"Host": host, "Cookie": cookies}

    def login(self, username="alice", password=PASSWORD, **extra):
        data = {"username": username, "password": password, **extra}
        return self.submit("/login", data)

    def signed_in(self) -> bool:
        return self.page("/index", allow_redirects=False).status_code == 200


@pytest.fixture
def site(live, smtp_server):
    """gunicorn on the test's database, mailing through the test's SMTP server; small limits."""
    site = live(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        SITE_URL=SITE_URL,
        SIGN_IN_LIMIT_PER_USER=5,
        SIGN_IN_LIMIT_PER_IP=12,
        API_TOKEN_LIMIT_PER_USER=5,
        API_TOKEN_LIMIT_PER_IP=12,
        RESET_LIMIT_PER_ADDRESS=3,
        RESET_LIMIT_PER_IP=5,
        REGISTER_LIMIT_PER_IP=2,
    )
    site.start_web()
    site.start_consumer()  # the worker sends the mail
    return site


def mails(smtp_server, count: int) -> list:
    """The first `count` messages the worker delivered (waiting for them as they come)."""
    wait_for(lambda: len(smtp_server.messages) >= count, timeout=30, what=f"{count} mails")
    assert len(smtp_server.messages) == count, smtp_server.messages
    return list(smtp_server.messages)


def copy_of(client: Client, address: str = "127.0.0.9") -> Client:
    """A second session holding copies of `client`'s cookies (a stolen cookie jar)."""
    thief = Client(client.base_url, address)
    for cookie in client.cookies:
        thief.cookies.set(cookie.name, cookie.value)
    return thief


def link_in(message, path: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    match = re.search(r"(\S+)(" + re.escape(path) + r"\S+)", text)
    assert match, text
    return match.group(1) + match.group(2)


# --- sessions that end ----------------------------------------------------------------


def test_logout_ends_every_copy_of_the_session_and_remember_cookie(site):
    alice = Client(site.url)
    assert alice.login(remember_me="y").status_code == 302
    assert {"session", "remember_token"} <= set(alice.cookies.keys())
    thief = copy_of(alice)
    remembered = Client(site.url, "127.0.0.10")
    remembered.cookies.set("remember_token", alice.cookies["remember_token"])
    assert thief.signed_in() and remembered.signed_in()

    assert alice.submit("/logout", token_from="/index").status_code == 302
    assert not alice.signed_in()
    assert not thief.signed_in()
    assert not remembered.signed_in()
    assert thief.page("/notifications?since=0", allow_redirects=False).status_code == 302


def test_password_change_ends_other_sessions_and_api_tokens(site):
    alice = Client(site.url)
    alice.login(remember_me="y")
    thief = copy_of(alice)
    token = requests.post(f"{site.url}/api/tokens", auth=("alice", PASSWORD)).json()["token"]
    api_headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{site.url}/api/timeline", headers=api_headers).status_code == 200

    response = alice.submit(
        "/settings/password",
        {"current_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
        token_from="/settings",
    )
    assert response.status_code == 302
    assert alice.signed_in()  # the browser that changed it carries on
    assert not thief.signed_in()
    assert requests.get(f"{site.url}/api/timeline", headers=api_headers).status_code == 401
    assert Client(site.url).login(password=PASSWORD).status_code == 401
    assert Client(site.url).login(password=NEW_PASSWORD).status_code == 302


def test_sign_out_everywhere(site):
    phone, laptop = Client(site.url), Client(site.url, "127.0.0.11")
    phone.login()
    laptop.login()
    assert phone.submit("/settings/sign_out_everywhere", token_from="/settings").status_code == 302
    assert not phone.signed_in() and not laptop.signed_in()


# --- links that cannot be poisoned ----------------------------------------------------------


def test_reset_with_a_forged_host_mails_the_site_url_and_ends_sessions(site, smtp_server):
    alice = Client(site.url)
    alice.login(remember_me="y")
    thief = copy_of(alice)
    visitor = Client(site.url, "127.0.0.12")
    visitor.page("/login")  # a session, and its CSRF token
    response = visitor.submit(
        "/reset_password_request",
        {"email": "alice@example.com"},
        headers=visitor.forged_host(),
    )
    assert response.status_code == 302
    (message,) = mails(smtp_server, 1)
    assert "evil.example" not in message.as_string()
    link = link_in(message, "/reset_password/")
    assert link.startswith(f"{SITE_URL}/reset_password/")

    path = link.removeprefix(SITE_URL)
    response = visitor.submit(
        path, {"password": NEW_PASSWORD, "password2": NEW_PASSWORD}, token_from=path
    )
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert not alice.signed_in() and not thief.signed_in()
    assert Client(site.url).login(password=NEW_PASSWORD).status_code == 302


def test_email_change_is_confirmed_by_the_new_address(site, smtp_server):
    alice = Client(site.url)
    alice.login()
    refused = alice.submit(
        "/settings/email",
        {"email": "alice@new.example", "current_password": "not my password"},
        token_from="/settings",
    )
    assert refused.status_code == 400 and "not your current password" in refused.text
    assert smtp_server.messages == []

    response = alice.submit(
        "/settings/email",
        {"email": "alice@new.example", "current_password": PASSWORD},
        token_from="/settings",
        headers=alice.forged_host(),
    )
    assert response.status_code == 302
    confirm, notice = sorted(mails(smtp_server, 2), key=lambda m: m["To"] != "alice@new.example")
    assert confirm["To"] == "alice@new.example"
    assert notice["To"] == "alice@example.com"
    assert "alice@new.example" in notice.get_body(("plain",)).get_content()
    assert site.query("SELECT email FROM user WHERE username = 'alice'") == [("alice@example.com",)]

    link = link_in(confirm, "/confirm_email/")
    assert link.startswith(f"{SITE_URL}/confirm_email/")
    path = link.removeprefix(SITE_URL)
    reader = Client(site.url, "127.0.0.13")  # opened in another browser, signed out
    assert reader.page(path).status_code == 200  # a GET changes nothing (mail scanners)
    assert site.query("SELECT email FROM user WHERE username = 'alice'") == [("alice@example.com",)]
    assert reader.submit(path, token_from=path).status_code == 302
    assert site.query("SELECT email FROM user WHERE username = 'alice'") == [("alice@new.example",)]
    # Used once: the address it confirmed is no longer the one it was issued against.
    assert "invalid, expired or already used" in reader.page(path).text


def test_api_email_change_needs_the_password_and_a_confirmation(site, smtp_server):
    token = requests.post(f"{site.url}/api/tokens", auth=("alice", PASSWORD)).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{site.url}/api/users/1"
    alice = requests.get(url, headers=headers).json()

    # A tutorial client sends the whole user back, same address: no password needed.
    response = requests.put(url, headers=headers, json={**alice, "about_me": "hi"})
    assert response.status_code == 200 and response.json()["about_me"] == "hi"
    # A token alone cannot take the account.
    response = requests.put(url, headers=headers, json={"email": "mallory@evil.example"})
    assert response.status_code == 403 and "current_password" in response.json()["message"]
    wrong = {"email": "mallory@evil.example", "current_password": "guess"}
    assert requests.put(url, headers=headers, json=wrong).status_code == 403
    assert smtp_server.messages == []

    right = {"email": "alice@new.example", "current_password": PASSWORD}
    response = requests.put(url, headers=headers, json=right)
    assert response.status_code == 200 and response.json()["email"] == "alice@example.com"
    assert sorted(m["To"] for m in mails(smtp_server, 2)) == [
        "alice@example.com",
        "alice@new.example",
    ]


# --- guessing that is throttled -------------------------------------------------------------


def test_sign_in_flood_from_one_address_never_locks_the_owner_out(site):
    attacker = Client(site.url, "127.0.0.2")
    statuses = [attacker.login(password=f"guess {n}").status_code for n in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    refused = attacker.login()  # even the right password, from there
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many sign-in attempts" in refused.text and "minutes" in refused.text

    # The owner, from another address, signs in at once.
    assert Client(site.url, "127.0.0.3").login().status_code == 302


def test_sign_in_spray_over_usernames_is_limited_per_address(site):
    attacker = Client(site.url, "127.0.0.4")
    statuses = [attacker.login(f"user{n}", "guess").status_code for n in range(14)]
    assert statuses == [401] * 12 + [429] * 2
    assert Client(site.url, "127.0.0.5").login("bob").status_code == 302


def test_api_token_flood_never_locks_the_owner_out(site):
    def ask(address, password):
        session = Client(site.url, address)
        return session.post(f"{site.url}/api/tokens", auth=("alice", password))

    statuses = [ask("127.0.0.6", "guess").status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    assert ask("127.0.0.6", PASSWORD).status_code == 429
    assert ask("127.0.0.7", PASSWORD).status_code == 200


def test_reset_mails_are_limited_per_address_and_per_client(site, smtp_server):
    one = Client(site.url, "127.0.0.14")
    statuses = [
        one.submit("/reset_password_request", {"email": "alice@example.com"}).status_code
        for _ in range(5)
    ]
    assert statuses == [302] * 3 + [429] * 2
    assert len(mails(smtp_server, 3)) == 3
    # Another client cannot mail alice either, but may still ask for bob.
    other = Client(site.url, "127.0.0.15")
    assert (
        other.submit("/reset_password_request", {"email": "alice@example.com"}).status_code == 429
    )
    assert other.submit("/reset_password_request", {"email": "bob@example.com"}).status_code == 302
    # One client asking for many addresses is limited too.
    many = [
        other.submit("/reset_password_request", {"email": f"u{n}@example.com"}).status_code
        for n in range(5)
    ]
    assert many == [302] * 3 + [429] * 2
    # alice thrice and bob once: u0…u2 have no account, and get no mail.
    assert len(mails(smtp_server, 4)) == 4


def test_registrations_are_limited_per_client_address(site):
    def register(client, name):
        data = {"username": name, "email": f"{name}@example.com"}
        data.update(password=PASSWORD, password2=PASSWORD)
        return client.submit("/register", data, token_from="/register")

    bot = Client(site.url, "127.0.0.16")
    assert [register(bot, f"bot{n}").status_code for n in range(4)] == [302, 302, 429, 429]
    response = requests.post(
        f"{site.url}/api/users",
        json={"username": "apibot", "email": "apibot@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201  # from 127.0.0.1: another address
    assert register(Client(site.url, "127.0.0.17"), "human").status_code == 302
    names = {name for (name,) in site.query("SELECT username FROM user")}
    assert {"bot0", "bot1", "apibot", "human"} <= names and "bot2" not in names


# --- an upload from someone not signed in --------------------------------------------------

# The start of a multipart body carrying a file (the rest is never sent).
UPLOAD_START = (
    b"--b\r\n"
    b'Content-Disposition: form-data; name="file"; filename="archive.zip"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n" + bytes(256 * 1024)
)


def answer_before_the_body(url: str, method: str, path: str, declared: int) -> bytes | None:
    """Send the headers of a `declared`-byte upload to `path` without a cookie, and only the
    first 256 KiB of its body; the response's head if it comes anyway, None if the server
    waits for the rest (it is reading the body)."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=10) as sock:
        sock.sendall(head + UPLOAD_START)
        try:
            return sock.recv(4096).split(b"\r\n\r\n")[0]
        except TimeoutError:
            return None


def test_an_upload_without_a_session_is_refused_before_its_body_is_read(live):
    """The sign-in check comes before the CSRF check, which would read (and spool to disk)
    the whole body first: up to 2 GiB for an import, from anyone."""
    site = live()
    site.start_web()
    uploads = {
        ("POST", "/import"): 500 * 1024 * 1024,
        ("POST", "/edit_profile"): 4 * 1024 * 1024,  # under the picture limit, so read
        ("POST", "/api/tasks"): 500 * 1024 * 1024,
        ("PUT", "/api/users/1/avatar"): 4 * 1024 * 1024,
    }
    answers = {
        f"{method} {path}": answer_before_the_body(site.url, method, path, declared)
        for (method, path), declared in uploads.items()
    }
    status_lines = {upload: (head or b"").split(b"\r\n")[0] for upload, head in answers.items()}
    assert status_lines == {
        "POST /import": b"HTTP/1.1 302 FOUND",
        "POST /edit_profile": b"HTTP/1.1 302 FOUND",
        "POST /api/tasks": b"HTTP/1.1 401 UNAUTHORIZED",
        "PUT /api/users/1/avatar": b"HTTP/1.1 401 UNAUTHORIZED",
    }
    for upload in ("POST /import", "POST /edit_profile"):
        assert b"\r\nLocation: /login?next=" in answers[upload], answers[upload]
