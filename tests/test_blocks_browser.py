"""Blocking in a real chromium: the profile's Block button (with its confirmation), the list
in /settings and /admin/domains fit a phone and have nothing serious for axe-core."""

import pytest
from playwright.sync_api import expect

from blocks import DomainBlock
from database import db
from tests.conftest import browser_login
from tests.helpers import add_posts
from tests.test_pages_browser import AXE, LONG_NAME, axe_violations

pytestmark = pytest.mark.browser

LONG_DOMAIN = ".".join(["a" * 63] * 3) + ".example"


def fits_and_passes_axe(page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
    if AXE.exists():
        assert axe_violations(page) == []


def test_block_from_the_profile_then_unblock_from_settings(live_server, browser, app, make_user):
    make_user("alice")
    long_user = make_user(LONG_NAME)
    add_posts(app, long_user, ["a post to hide"])
    context = browser.new_context(base_url=live_server, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    browser_login(page, live_server)

    page.goto(f"/user/{LONG_NAME}")
    expect(page.locator(".post-body")).to_have_text("a post to hide")
    fits_and_passes_axe(page)
    page.get_by_role("button", name=f"Block {LONG_NAME}").click()
    expect(page.locator(".blocked-notice")).to_be_visible()
    expect(page.locator(".post-body")).to_have_count(0)

    page.goto("/settings")
    page.fill("#block-domain", LONG_DOMAIN)
    page.get_by_role("button", name="Block domain").click()
    expect(page.locator(".blocked-domain")).to_contain_text(LONG_DOMAIN)
    expect(page.locator(".blocked-account")).to_contain_text(LONG_NAME)
    fits_and_passes_axe(page)
    page.get_by_role("button", name=f"Unblock {LONG_NAME}").click()
    expect(page.locator(".blocked-account")).to_have_count(0)
    expect(page.locator(".blocked-domain")).to_have_count(1)
    context.close()


def test_admin_domain_page_on_a_phone(live_server, browser, app, admin):
    with app.app_context():
        db.session.add(DomainBlock(domain=LONG_DOMAIN))
        db.session.commit()
    context = browser.new_context(base_url=live_server, viewport={"width": 390, "height": 844})
    page = context.new_page()
    browser_login(page, live_server, "root")
    page.goto("/admin/domains/")
    expect(page.locator(".site-blocked-domains")).to_contain_text(LONG_DOMAIN)
    fits_and_passes_axe(page)
    page.fill("#domain", "spam.example")
    page.get_by_role("button", name="Block for the whole site").click()
    expect(page.locator(".site-blocked-domains")).to_contain_text("spam.example")
    context.close()
