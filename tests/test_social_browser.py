"""In a real chromium: the live unread badge and the user popup."""

import pytest

from tests.conftest import browser_login

pytestmark = pytest.mark.browser

POLL_WAIT_MS = 5_000  # the page polls every 300 ms here (10 s by default)


@pytest.fixture
def app_config():
    # The page script's poll interval comes from the config: no 10 s waits in tests.
    return {"NOTIFICATIONS_POLL_IDLE_MS": 300, "NOTIFICATIONS_POLL_BUSY_MS": 200}


def logged_in_page(browser, base_url, username):
    page = browser.new_context(base_url=base_url).new_page()
    browser_login(page, base_url, username)
    return page


def test_badge_updates_live_and_username_shows_popup(app, live_server, browser, make_user):
    from playwright.sync_api import expect

    make_user("alice")
    make_user("bob", about_me='<img src=x onerror="window.pwned=1"> likes trains')
    bob = logged_in_page(browser, live_server, "bob")
    bob.fill("textarea[name=post]", "hello from bob")
    bob.click("form button[type=submit]:has-text('Post')")

    alice = logged_in_page(browser, live_server, "alice")
    # Let the page's first poll happen before bob writes, so the update is a later poll.
    with alice.expect_response(lambda response: "/notifications" in response.url):
        alice.goto("/explore")
    badge = alice.locator("#message_count")
    expect(badge).to_be_hidden()

    bob.goto("/send_message/alice")
    bob.fill("textarea[name=message]", "psst, alice")
    bob.click("button[type=submit]:has-text('Send')")
    expect(bob.locator(".alert-success")).to_contain_text("has been sent")

    # Meanwhile alice hovers bob's name: the card appears, with his about-me as text.
    alice.hover("#post-1 a.user-link")
    card = alice.locator(".user-popup")
    expect(card).to_be_visible()
    expect(card).to_contain_text('<img src=x onerror="window.pwned=1"> likes trains')
    expect(card.locator(".followers-count")).to_have_text("0")
    assert alice.evaluate("window.pwned") is None

    # The follow button works from inside the card, without leaving the page.
    card.locator("button:has-text('Follow')").click()
    expect(card.locator("button:has-text('Unfollow')")).to_be_visible()
    expect(card.locator(".followers-count")).to_have_text("1")
    assert alice.url.endswith("/explore")

    # The badge shows bob's message without a reload.
    expect(badge).to_have_text("1", timeout=POLL_WAIT_MS)
    expect(badge).to_be_visible()

    # Reading the messages resets it, also on another open page of alice's.
    other_tab = alice.context.new_page()
    other_tab.goto("/explore")
    expect(other_tab.locator("#message_count")).to_have_text("1")
    alice.goto("/messages")
    expect(alice.locator(".message-body")).to_have_text("psst, alice")
    expect(alice.locator("#message_count")).to_be_hidden()
    expect(other_tab.locator("#message_count")).to_be_hidden(timeout=POLL_WAIT_MS)
