"""Your data in a real browser (Debian's chromium via Playwright) against a live site with a
real consumer: a new picture shows on the open page once the worker has made it, and an
import's progress bar moves, ends with its message, and can be cancelled, all without a
reload."""

import json
import re
import time
from pathlib import Path

import pytest

from tests.conftest import browser_login
from tests.helpers import add_posts
from tests.test_avatars_web import png

pytestmark = [pytest.mark.browser, pytest.mark.consumer]

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
# The page polls every 200 ms here (10 s, or 1 s while a task runs, by default).
FAST_POLLS = {"MICROBLOG_POLL_IDLE_MS": 200, "MICROBLOG_POLL_BUSY_MS": 200}
WAIT_MS = 30_000


def mark_not_reloaded(page):
    """Anything set on `window` survives only while the page is not reloaded."""
    page.evaluate("() => { window.notReloaded = true; }")


def not_reloaded(page) -> bool:
    return page.evaluate("() => window.notReloaded === true")


# --- a new picture -----------------------------------------------------------------------


def test_a_new_picture_shows_on_the_open_page_without_a_reload(app, users, live, page):
    from playwright.sync_api import expect

    alice = users["alice"]
    add_posts(app, alice, 2)
    site = live(**FAST_POLLS)
    site.start_web()
    site.start_consumer()
    browser_login(page, site.url)

    # Alice's profile is open: her picture in the navbar, the header and her two posts.
    page.goto(site.url + "/user/alice")
    # (The user card, once opened, stays in the page, hidden: its picture is looked at apart.)
    pictures = page.locator(f'img[data-avatar-user="{alice}"]:not(.user-popup img)')
    expect(pictures).to_have_count(4)
    sizes = [int(picture.get_attribute("width")) for picture in pictures.all()]
    assert sorted(sizes) == [24, 48, 48, 128]
    assert all(picture.get_attribute("src").endswith(".svg") for picture in pictures.all())
    card_picture = open_user_card(page)
    expect(card_picture).to_have_attribute("src", re.compile(r"\.svg$"))
    close_user_card(page)
    mark_not_reloaded(page)

    # She uploads a picture in another tab.
    upload = page.context.new_page()
    upload.goto(site.url + "/edit_profile")
    files = {"name": "me.png", "mimeType": "image/png", "buffer": png()}
    upload.set_input_files("input[name=avatar]", files=[files])
    upload.click("button[type=submit]:has-text('Save')")
    upload.wait_for_url(site.url + "/edit_profile")

    # Once the worker has made it, every one of them shows it, in the stored size that
    # fits (48 for the navbar's 24), on the page that was open all along.
    for index, size in enumerate(sizes):
        stored = 48 if size <= 48 else 128
        new = re.compile(rf"^/avatars/{alice}-{stored}\.webp\?v=[0-9]+$")
        expect(pictures.nth(index)).to_have_attribute("src", new, timeout=WAIT_MS)
    assert not_reloaded(page)
    # …and the files load (the swap is not a broken image).
    for picture in pictures.all():
        expect(picture).to_have_js_property("complete", True)
        assert picture.evaluate("img => img.naturalWidth") > 0
    assert site.task()["status"] == "done"
    # A user card opened before the change is not shown again from the page's memory.
    new_card = re.compile(rf"^/avatars/{alice}-[0-9]+\.webp\?v=[0-9]+$")
    expect(open_user_card(page)).to_have_attribute("src", new_card, timeout=WAIT_MS)
    close_user_card(page)
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "avatar-swapped.png")
    # The tab that uploaded shows it too, with or without the swap (it may have loaded after).
    own = upload.locator(f'.current-avatar img[data-avatar-user="{alice}"]')
    expect(own).to_have_attribute("src", re.compile(r"^/avatars/"), timeout=WAIT_MS)


def open_user_card(page):
    """Hover the first post's author name; the picture in the card that opens."""
    page.hover(".post a.user-link >> nth=0")
    picture = page.locator(".user-popup img[data-avatar-user]")
    picture.wait_for(state="visible")
    return picture


def close_user_card(page):
    page.mouse.move(0, 0)
    page.locator(".user-popup").wait_for(state="hidden")


# --- importing ---------------------------------------------------------------------------


# The import's bar follows the bytes read from the file, 64 KiB at a time: a file of
# about 1.4 MB moves it in steps of about 5 %.
POSTS = 8000


def export_file(count: int = POSTS) -> bytes:
    """Our export format with `count` posts of 130 characters, a second apart."""
    posts = [
        {
            "body": f"post {i:05d} " + "x" * 119,
            "timestamp": f"2024-05-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        }
        for i in range(count)
    ]
    return json.dumps({"posts": posts}).encode()


def start_import_in_the_page(page, site, data: bytes):
    """Sign in, upload `data` on /import; the profile page then shows the import's banner."""
    browser_login(page, site.url)
    page.goto(site.url + "/import")
    files = {"name": "posts.json", "mimeType": "application/json", "buffer": data}
    page.set_input_files("input[name=file]", files=[files])
    page.click("button[type=submit]:has-text('Import')")
    page.wait_for_url(site.url + "/user/alice")
    return page.locator(".task-banner")


def test_import_progress_bar_moves_then_says_what_was_imported(app, users, live, page):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    # 40 batches of 200 posts, 0.1 s each: about 4 s, long enough to watch the bar move.
    site = live(MICROBLOG_IMPORT_BATCH_SIZE=200, **FAST_POLLS)
    site.start_web()
    site.start_consumer(pause_per_batch=0.1)
    banner = start_import_in_the_page(page, site, export_file())
    expect(banner.locator(".progress")).to_be_visible()
    mark_not_reloaded(page)

    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and banner.locator(".progress").count():
        try:
            value = banner.locator(".progress").get_attribute("aria-valuenow", timeout=1000)
        except PlaywrightTimeout:  # the banner was redrawn, finished and without its bar
            continue
        if value is not None:
            seen.append(int(value))
        page.wait_for_timeout(100)

    expect(banner.locator(".task-message")).to_have_text("Imported 8,000 posts.", timeout=WAIT_MS)
    expect(banner).to_have_attribute("data-status", "done")
    assert not_reloaded(page)
    moving = sorted(set(value for value in seen if 0 < value < 100))
    assert len(moving) >= 2, seen  # the bar moved, at least twice, without a reload
    assert seen == sorted(seen)
    (imported,) = site.query("SELECT count(*) FROM post WHERE user_id = ?", (users["alice"],))
    assert imported == (POSTS,)


def test_cancel_an_import_from_the_page(app, users, live, page):
    from playwright.sync_api import expect

    # 80 batches of 100 posts, 0.3 s each: half a minute unless cancelled.
    site = live(MICROBLOG_IMPORT_BATCH_SIZE=100, **FAST_POLLS)
    site.start_web()
    site.start_consumer(pause_per_batch=0.3)
    banner = start_import_in_the_page(page, site, export_file())
    # Past the check pass (the first 30 %): posts are going in.
    percent = banner.locator(".task-percent")
    expect(percent).to_have_text(re.compile(r"^(3[1-9]|[4-9][0-9])%$"), timeout=WAIT_MS)

    mark_not_reloaded(page)
    banner.locator("button:has-text('Cancel')").click()
    expect(banner.locator(".task-state")).to_have_text("cancelled", timeout=WAIT_MS)
    expect(banner.locator(".progress")).to_have_count(0)
    assert not_reloaded(page)  # the banner said it without leaving the page
    task = site.task()
    assert (task["name"], task["status"]) == ("import_posts", "cancelled")
    (imported,) = site.query("SELECT count(*) FROM post WHERE user_id = ?", (users["alice"],))
    assert 0 < imported[0] < POSTS
    assert not list((site.data_dir / "imports").iterdir())  # the upload went with it
