"""The export banner in a real browser (Debian's chromium via Playwright) against a live site."""

import json
import time

import pytest

from tests.conftest import browser_login
from tests.helpers import add_posts

# `page` is the shared fixture in conftest.py: Debian's chromium through Playwright.

pytestmark = [pytest.mark.browser, pytest.mark.consumer]


@pytest.fixture
def site(app, users, live):
    add_posts(app, users["alice"], 500)
    # 25 batches of 20 posts, 0.2 s each: about 5 s, long enough to watch the bar move.
    site = live(MICROBLOG_EXPORT_BATCH_SIZE=20)
    site.start_web()
    site.start_consumer(pause_per_batch=0.2)
    return site


def test_progress_bar_moves_and_becomes_a_download_link(page, site):
    browser_login(page, site.url)
    page.goto(site.url + "/user/alice")

    page.click("text=Export your posts")
    page.wait_for_selector(".task-banner .progress")
    # Anything set on `window` survives only while the page is not reloaded.
    page.evaluate("window.notReloaded = true")
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if page.locator(".task-banner a.task-download").count():
            break
        bar = page.locator(".task-banner .progress")
        if bar.count():
            seen.append(int(bar.get_attribute("aria-valuenow")))
        page.wait_for_timeout(100)

    link = page.locator(".task-banner a.task-download")
    assert link.count() == 1, page.content()
    assert page.evaluate("window.notReloaded") is True
    moving = sorted(set(value for value in seen if 0 < value < 100))
    assert len(moving) >= 2, seen  # the bar moved, at least twice, without a reload
    assert seen == sorted(seen)
    banner = page.locator(".task-banner").inner_text()
    assert "Your export is ready" in banner and "KB" in banner
    task = site.task()
    assert task["status"] == "done"
    assert link.get_attribute("href") == f"/exports/{task['id']}"
    response = page.request.get(site.url + link.get_attribute("href"))
    assert response.status == 200
    assert len(json.loads(response.body())["posts"]) == 500
    # The banner the script swapped in is the one a reload renders: one rendering, one text.
    page.reload()
    assert page.locator(".task-banner").inner_text() == banner


def test_task_history_follows_the_task_without_a_reload(page, site):
    from playwright.sync_api import expect

    browser_login(page, site.url)
    page.goto(site.url + "/user/alice")
    page.click("text=Export your posts")
    page.goto(site.url + "/tasks")
    status = page.locator(".task-history .task-status").first
    expect(status).not_to_contain_text("Done")
    page.evaluate("window.notReloaded = true")
    expect(status).to_contain_text("Done", timeout=60_000)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator(".task-history a:has-text('Download')").count() == 1
