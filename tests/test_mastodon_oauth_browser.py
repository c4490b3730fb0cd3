"""The OAuth authorize page in Chromium: a signed-in user approves (with PKCE) or denies an
app, and the browser is sent on to the app's own address on another origin, as a Mastodon
app's login flow does; the page fits a phone and axe-core finds nothing serious on it."""

import http.server
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.conftest import browser_login
from tests.mastodon_support import make_app, pkce_pair
from tests.test_pages_browser import AXE, axe_violations

pytestmark = pytest.mark.browser


@pytest.fixture
def callback_server():
    """The app's side: another origin that answers every GET with a small page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<!doctype html><title>app</title><p>back in the app</p>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/callback"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def open_authorize_page(page, live_server, client_id, callback, **extra):
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": callback,
        "scope": "read write",
        "state": "st4te",
        **extra,
    }
    page.goto(f"{live_server}/oauth/authorize?{urlencode(query)}")


def test_approve_with_pkce_then_the_app_gets_a_token(
    app, live_server, page, callback_server, users
):
    client_id, secret = make_app(app, redirect_uris=[callback_server], name="Phone app")
    verifier, challenge = pkce_pair()
    browser_login(page, live_server)
    page.set_viewport_size({"width": 390, "height": 844})
    open_authorize_page(
        page,
        live_server,
        client_id,
        callback_server,
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    assert page.locator("h1").inner_text() == "Authorize Phone app?"
    assert page.locator("#scopes li").all_inner_texts() == ["read", "write"]
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner
    if AXE.exists():
        assert axe_violations(page) == []
    page.click("button[name=approve]")
    page.wait_for_url(callback_server + "?*")
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == ["st4te"]
    exchange = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uri": callback_server,
        "code_verifier": verifier,
    }
    token = requests.post(f"{live_server}/oauth/token", data=exchange, timeout=10)
    assert token.status_code == 200, token.text
    me = requests.get(
        f"{live_server}/api/v1/accounts/verify_credentials",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=10,
    )
    assert me.json()["username"] == "alice"
    # The settings page now names the app, with its Revoke button, and still fits the phone.
    page.goto(f"{live_server}/settings")
    assert "Phone app" in page.locator("#authorized-apps").inner_text()
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= inner
    if AXE.exists():
        assert axe_violations(page) == []
    page.click("#authorized-apps button")
    assert "no longer has access" in page.locator(".alert").first.inner_text()
    assert "Phone app" not in page.locator("#authorized-apps").inner_text()
    gone = requests.get(
        f"{live_server}/api/v1/accounts/verify_credentials",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=10,
    )
    assert gone.status_code == 401


def test_deny_sends_the_app_an_error(app, live_server, page, callback_server, users):
    client_id, _secret = make_app(app, redirect_uris=[callback_server])
    browser_login(page, live_server)
    open_authorize_page(page, live_server, client_id, callback_server)
    page.click("button[name=deny]")
    page.wait_for_url(callback_server + "?*")
    query = parse_qs(urlsplit(page.url).query)
    assert query["error"] == ["access_denied"] and "code" not in query


def test_a_wrong_verifier_gets_no_token(app, live_server, page, callback_server, users):
    client_id, secret = make_app(app, redirect_uris=[callback_server])
    _verifier, challenge = pkce_pair()
    browser_login(page, live_server)
    open_authorize_page(
        page,
        live_server,
        client_id,
        callback_server,
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    page.click("button[name=approve]")
    page.wait_for_url(callback_server + "?*")
    code = parse_qs(urlsplit(page.url).query)["code"][0]
    other_verifier, _challenge = pkce_pair()
    token = requests.post(
        f"{live_server}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uri": callback_server,
            "code_verifier": other_verifier,
        },
        timeout=10,
    )
    assert token.status_code == 400 and token.json()["error"] == "invalid_grant"


def test_out_of_band_code_is_shown_to_copy(app, live_server, page, users):
    client_id, _secret = make_app(app)
    browser_login(page, live_server)
    open_authorize_page(page, live_server, client_id, "urn:ietf:wg:oauth:2.0:oob")
    page.click("button[name=approve]")
    page.wait_for_selector("#code")
    assert len(page.input_value("#code")) > 30
    if AXE.exists():
        assert axe_violations(page) == []
