"""/admin/jobs in a real browser (Debian's chromium via Playwright) against gunicorn and a real
consumer: a task fails, the open dashboard shows it by itself, and Retry runs it again."""

import pytest

from tests.conftest import PASSWORD, browser_login
from tests.live import Browser

pytestmark = [pytest.mark.browser, pytest.mark.consumer]


def test_a_failed_task_shows_up_and_retry_runs_it_again(page, app, users, admin, live, tmp_path):
    site = live(MICROBLOG_ADMIN_REFRESH_MS=300)
    site.start_web()
    site.start_consumer()
    # A file where the exports directory should be: every export fails until it is removed.
    blocker = tmp_path / "exports"
    blocker.write_text("not a directory")

    browser_login(page, site.url, "root")
    page.goto(site.url + "/admin/jobs")
    page.wait_for_selector(".consumer[data-alive=yes]")
    assert "No failed tasks." in page.inner_text(".failures")
    page.evaluate("window.notReloaded = true")

    alice = Browser(site.url)
    alice.login("alice", PASSWORD)
    assert alice.submit("/export_posts")[0] == 200
    failed = site.wait_for_status(site.task()["id"], "failed")
    assert "File exists" in failed["message"]

    # The open page picks the failure up by itself.
    row = page.locator(f'.failures tr[data-task-id="{failed["id"]}"]')
    row.wait_for(timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
    assert "alice" in row.inner_text() and "File exists" in row.inner_text()
    assert page.inner_text('.task-counts tr[data-status="failed"] .count') == "1"

    blocker.unlink()
    row.locator("button", has_text="Retry").click()
    page.wait_for_selector("text=started again for alice")
    again = site.task()  # the newest task
    assert again["id"] != failed["id"]
    assert (again["user_id"], again["name"]) == (users["alice"], "export_posts")
    assert site.wait_for_status(again["id"], "done")["progress"] == 100
