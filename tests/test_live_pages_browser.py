"""In a real chromium: what changes elsewhere shows on an open page without a reload."""

import pytest

from tests.conftest import PASSWORD, browser_login
from tests.helpers import follow

pytestmark = pytest.mark.browser

POLL_WAIT_MS = 5_000  # the page polls every 300 ms here (10 s by default)


@pytest.fixture
def app_config():
    return {"NOTIFICATIONS_POLL_IDLE_MS": 300, "NOTIFICATIONS_POLL_BUSY_MS": 200}


@pytest.fixture
def alice(live_server, page, users):
    browser_login(page, live_server)
    return page


def not_reloaded(page) -> bool:
    return page.evaluate("window.notReloaded === true")


def test_profile_header_follows_a_follow_from_a_user_card(
    app, live_server, alice, users, auth, client
):
    from playwright.sync_api import expect

    follow(app, users["alice"], users["bob"])
    auth.login("bob")
    client.submit("/index", {"post": "bob was here"})
    page = alice
    page.goto(f"{live_server}/user/bob")
    page.evaluate("window.notReloaded = true")
    header = page.locator("#profile-header")
    expect(header.locator(".followers-count")).to_have_text("1")

    page.hover(".post a.user-link")
    page.locator(".user-popup button:has-text('Unfollow')").click()

    expect(header.locator(".followers-count")).to_have_text("0")
    expect(header.locator("button:has-text('Follow')")).to_be_visible()
    assert not_reloaded(page)


def test_a_message_appears_on_the_open_messages_page(live_server, alice, auth, client):
    from playwright.sync_api import expect

    alice.goto(f"{live_server}/messages")
    alice.evaluate("window.notReloaded = true")
    expect(alice.locator(".no-messages")).to_be_visible()

    auth.login("bob")
    client.submit("/send_message/alice", {"message": "<b>are you there?</b>"})

    body = alice.locator(".message-body")
    expect(body).to_have_text("<b>are you there?</b>", timeout=POLL_WAIT_MS)
    expect(alice.locator(".no-messages")).to_have_count(0)
    # It is shown, so it is read: the badge does not claim otherwise.
    expect(alice.locator("#message_count")).to_be_hidden(timeout=POLL_WAIT_MS)
    client.submit("/send_message/alice", {"message": "second"})
    expect(body.first).to_have_text("second", timeout=POLL_WAIT_MS)
    expect(body).to_have_count(2)
    assert not_reloaded(alice)


def test_home_tells_of_new_posts_and_shows_them_on_click(
    app, live_server, alice, users, auth, client
):
    from playwright.sync_api import expect

    follow(app, users["alice"], users["bob"])
    alice.goto(f"{live_server}/index")
    alice.evaluate("window.notReloaded = true")
    auth.login("carol")  # not followed: her posts are not news to alice
    client.submit("/index", {"post": "carol's post"})
    auth.logout()
    auth.login("bob")
    client.submit("/index", {"post": "bob's first"})
    notice = alice.locator("#new-posts a")
    expect(notice).to_have_text("1 new post: show them", timeout=POLL_WAIT_MS)
    client.submit("/index", {"post": "bob's second"})
    expect(notice).to_have_text("2 new posts: show them", timeout=POLL_WAIT_MS)
    assert not_reloaded(alice)

    notice.click()
    expect(alice.locator(".post-body").first).to_have_text("bob's second")
    expect(alice.locator(".post-body", has_text="carol")).to_have_count(0)
    alice.wait_for_timeout(1000)  # several polls: nothing new since the click
    expect(alice.locator("#new-posts a")).to_have_count(0)


@pytest.mark.consumer
def test_worker_warning_goes_when_the_worker_starts(live, page):
    from playwright.sync_api import expect

    site = live(MICROBLOG_POLL_IDLE_MS=300, MICROBLOG_POLL_BUSY_MS=200)
    site.start_web()
    browser_login(page, site.url, "alice", PASSWORD)
    page.goto(f"{site.url}/user/alice")
    page.click("text=Export your posts")
    warning = page.locator(".task-banner .worker-missing")
    expect(warning).to_contain_text("background worker is not running")
    page.evaluate("window.notReloaded = true")

    site.start_consumer()

    expect(warning).to_have_count(0, timeout=15_000)
    expect(page.locator(".task-banner")).to_contain_text("Download", timeout=15_000)
    assert not_reloaded(page)
