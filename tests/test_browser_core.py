"""The core pages in a real browser (Debian's chromium through Playwright)."""

import re

import pytest

from tests.conftest import browser_login
from tests.live import wait_for

pytestmark = pytest.mark.browser


def test_post_shows_relative_date_and_deletes_after_confirmation(live_server, page, users):
    browser_login(page, live_server)
    # Bootstrap is served by the app: the navbar is laid out as flex, not as a plain list.
    assert page.eval_on_selector("nav.navbar", "el => getComputedStyle(el).display") == "flex"

    page.fill("textarea[name=post]", "hello from a browser")
    page.click("form button[type=submit]:has-text('Post')")
    page.wait_for_selector("text=Your post is now live!")

    stamp = page.locator(".post time.relative-time").first
    assert re.search(r"now|second|minute", stamp.inner_text()), stamp.inner_text()
    assert "UTC" in stamp.get_attribute("title")

    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.click(".post button:has-text('Delete')")
    page.wait_for_selector("text=Your post was deleted.")
    assert dialogs == ["Delete this post?"]
    assert page.locator(".post-body", has_text="hello from a browser").count() == 0


def test_declining_the_confirmation_keeps_the_post(live_server, page, users):
    browser_login(page, live_server)
    page.fill("textarea[name=post]", "keep me")
    page.click("form button[type=submit]:has-text('Post')")
    page.wait_for_selector("text=Your post is now live!")
    page.on("dialog", lambda dialog: dialog.dismiss())
    page.click(".post button:has-text('Delete')")
    page.reload()
    assert page.locator(".post-body", has_text="keep me").count() == 1


def test_logout_button_posts_and_logs_out(live_server, page, users):
    browser_login(page, live_server)
    page.click("nav button:has-text('Logout')")
    page.wait_for_selector("text=You have been logged out.")
    page.goto(f"{live_server}/index")
    assert "/login" in page.url


def test_avatars_fall_back_to_a_local_picture_offline(app, live_server, page, users):
    # With Gravatar turned on, and unreachable from the test machine, as from a server
    # without internet.
    app.config["MICROBLOG_GRAVATAR"] = True
    page.route("https://www.gravatar.com/**", lambda route: route.abort())
    browser_login(page, live_server)
    page.goto(f"{live_server}/user/alice")
    avatar = page.locator("img.avatar").first
    # Polled from here: wait_for_function would evaluate a string, which the CSP refuses.
    wait_for(lambda: avatar.evaluate("img => img.naturalWidth") > 0, what="the local picture")
    assert avatar.get_attribute("src").startswith("/static/avatar.svg?v=")
