"""Two sites of ours federating, driven in Chromium as their users would.

Site A on 127.0.0.2 (alice) and site B on 127.0.0.3 (bob), each gunicorn + huey_consumer,
with http and private addresses allowed as a local experiment needs. Alice finds
@bob@127.0.0.3:PORT through search, follows him, reads his post in her home timeline,
mentions him, messages him and reads his answer, and unfollows; every step is checked on
both sides and photographed into tests/screenshots/.
"""

from pathlib import Path
from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD, browser_login
from tests.federation_clients import handle
from tests.live import Browser, wait_for
from tests.test_avatars_web import png
from tests.test_pages_browser import AXE, axe_violations

pytestmark = [pytest.mark.browser, pytest.mark.consumer]

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots" / "federation"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def sites(federated_site):
    return federated_site("127.0.0.2", users=("alice",)), federated_site(
        "127.0.0.3", users=("bob",)
    )


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def fits_the_phone(page) -> bool:
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return scroll <= inner


def reload_until(page, text: str, what: str, timeout=30, button=False) -> None:
    """Reload until `text` (or a button named so) shows: a remote server's answer arrives in
    the background."""

    def shows():
        page.reload()
        if button:
            return page.get_by_role("button", name=text, exact=True).count() > 0
        return page.get_by_text(text).count() > 0

    wait_for(shows, timeout=timeout, interval=0.5, what=what)


def reload_until_picture(page) -> None:
    """Reload until the profile shows the remote account's picture, fetched by A's worker
    (before that it shows the generated one)."""

    def loaded():
        page.reload()
        sources = page.locator("img").evaluate_all("imgs => imgs.map(i => i.currentSrc)")
        return any("/avatars/" in source for source in sources)

    wait_for(loaded, timeout=30, interval=0.5, what="bob's picture served by site A")


def page_text(browser: Browser, path: str) -> str:
    status, body, _headers = browser.get(path)
    assert status == 200, (path, status)
    return body.decode()


def post(page, site_url: str, text: str) -> None:
    page.goto(f"{site_url}/index")
    page.fill("textarea[name=post]", text)
    page.get_by_role("button", name="Post").click()
    expect(page.get_by_text(text).first).to_be_visible()


def test_find_follow_read_mention_message_unfollow(sites, browser):
    site_a, site_b = sites
    bob_handle = handle(site_b, "bob")
    alice_handle = handle(site_a, "alice")
    bob = Browser(site_b.url)
    bob.login("bob", PASSWORD)
    profile = {"username": "bob", "about_me": "Bob, writing from site B"}
    status, _body = bob.upload("/edit_profile", "bob.png", png(), "avatar", profile)
    assert status == 200
    picture = site_b.wait_for_status(site_b.task()["id"], "done", "failed")
    assert picture["status"] == "done", picture
    status, _body = bob.submit("/index", {"post": "Hello from bob"}, token_from="/index")
    assert status == 200

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    # No reader's browser asks another site for anything: remote pictures are served by A.
    elsewhere = []
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(site_a.url) else elsewhere.append(request.url)
        ),
    )
    try:
        browser_login(page, site_a.url, "alice")
        # Find: the handle typed into search leads to bob's profile on this site.
        page.goto(f"{site_a.url}/search")
        page.get_by_role("searchbox").first.fill(f"@{bob_handle}")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        shoot(page, "1-search")
        profile = f"{site_a.url}/user/{bob_handle}"
        if unquote(page.url) != profile:  # a list of results: bob's is among them
            page.locator("main a").filter(has_text=bob_handle).first.click()
        page.wait_for_url(lambda url: unquote(url) == profile)
        expect(page.get_by_text("Bob, writing from site B")).to_be_visible()
        reload_until(page, "Hello from bob", "bob's posts from his outbox on his profile")
        reload_until_picture(page)
        assert fits_the_phone(page)
        if AXE.exists():
            assert axe_violations(page) == []
        shoot(page, "2-remote-profile")

        # Follow: requested, then accepted by site B.
        page.get_by_role("button", name="Follow", exact=True).click()
        wait_for(
            lambda: alice_handle in page_text(bob, "/user/bob/followers"),
            interval=0.5,
            what="site B to list alice among bob's followers",
        )
        reload_until(page, "Unfollow", "the Accept to reach site A", button=True)
        shoot(page, "3-following")

        # Read: bob's new post reaches alice's home timeline.
        bob.submit("/index", {"post": "Fresh news from bob"}, token_from="/index")
        page.goto(f"{site_a.url}/index")
        reload_until(page, "Fresh news from bob", "bob's post in alice's timeline")
        shoot(page, "4-home-timeline")

        # Mention: bob is notified on site B.
        post(page, site_a.url, f"Hi @{bob_handle}, welcome!")
        wait_for(
            lambda: site_b.query(
                "SELECT n.name FROM notification n JOIN user u ON u.id = n.user_id"
                " WHERE u.username = 'bob' AND n.name LIKE '%mention%'"
            ),
            interval=0.5,
            what="a mention notification for bob on site B",
        )

        # Message: to bob on site B, and his answer back in alice's messages.
        page.goto(f"{site_a.url}/send_message/{bob_handle}")
        page.fill("textarea[name=message]", "A private word, bob")
        page.get_by_role("button", name="Send").click()
        wait_for(
            lambda: "A private word, bob" in page_text(bob, "/messages"),
            interval=0.5,
            what="alice's message in bob's messages on site B",
        )
        assert "A private word, bob" not in page_text(bob, "/index")
        bob.submit(
            f"/send_message/{alice_handle}",
            {"message": "Got it, alice"},
            token_from=f"/send_message/{alice_handle}",
        )
        page.goto(f"{site_a.url}/messages")
        reload_until(page, "Got it, alice", "bob's answer in alice's messages")
        shoot(page, "5-messages")

        # Unfollow: site B forgets the follow.
        page.goto(f"{site_a.url}/user/{bob_handle}")
        page.get_by_role("button", name="Unfollow", exact=True).click()
        expect(page.get_by_role("button", name="Follow", exact=True)).to_be_visible()
        wait_for(
            lambda: alice_handle not in page_text(bob, "/user/bob/followers"),
            interval=0.5,
            what="the Undo to reach site B",
        )
        shoot(page, "6-unfollowed")
        assert elsewhere == []
    finally:
        shoot(page, "last")
        context.close()
