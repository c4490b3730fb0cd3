"""The pages still work in chromium with the Content-Security-Policy on: no violation on any
page, the confirm dialog and the page scripts run from static/*.js."""

import pytest

from tests.conftest import browser_login
from tests.helpers import add_posts

pytestmark = pytest.mark.browser

# Recorded by the page itself, before any of its scripts run (an init script is injected by
# the browser, not subject to the page's policy).
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.violatedDirective + " " + event.blockedURI);
});
"""
PAGES = ["/index", "/explore", "/user/alice", "/user/bob", "/messages", "/settings", "/tasks"]


@pytest.fixture
def watched(page):
    """The page, with every CSP violation and console error it reports collected."""
    page.add_init_script(RECORD_VIOLATIONS)
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # Gravatar is unreachable here: the local fallback picture stands in (not a violation).
    page.route("https://www.gravatar.com/**", lambda route: route.abort())
    return page


def violations(page) -> list:
    return page.evaluate("window.__violations")


def test_no_csp_violation_on_any_page(live_server, watched, app, users):
    add_posts(app, users["alice"], 2)
    add_posts(app, users["bob"], 2)
    browser_login(watched, live_server)
    for path in [*PAGES, "/search?q=post", "/send_message/bob"]:
        response = watched.goto(f"{live_server}{path}")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        watched.wait_for_load_state("load")
        assert violations(watched) == [], path
    # The user popup (fetched and inserted by the script) is allowed too.
    watched.goto(f"{live_server}/explore")
    watched.hover(".post a.user-link >> text=bob")
    watched.wait_for_selector(".user-popup:not([hidden])")
    assert violations(watched) == []
    assert not [e for e in watched.errors if "Content Security Policy" in e], watched.errors


def test_delete_asks_first_without_inline_script(live_server, watched, app, users):
    add_posts(app, users["alice"], ["mine to delete"])
    browser_login(watched, live_server)
    dialogs = []
    watched.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    watched.click(".post button:has-text('Delete')")
    watched.wait_for_selector("text=Your post was deleted.")
    assert dialogs == ["Delete this post?"]
    assert violations(watched) == []


def test_messages_page_marks_what_it_shows_as_read(live_server, watched, client, users):
    client.submit("/login", {"username": "bob", "password": "correct horse battery"})
    client.submit("/send_message/alice", {"message": "hello alice"})
    browser_login(watched, live_server)
    assert watched.inner_text("#message_count") == "1"
    watched.goto(f"{live_server}/messages")
    watched.wait_for_selector("#message_count.d-none", state="attached")
    assert watched.locator("#mark-read").is_hidden()
    watched.goto(f"{live_server}/index")
    assert watched.locator("#message_count").is_hidden()
    assert violations(watched) == []
