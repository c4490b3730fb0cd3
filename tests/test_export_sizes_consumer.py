"""Exports of every size around one batch, with gunicorn and a real huey_consumer: none, one
post, a batch less one, a batch, a batch and one; launched from the page and from the API.

The export reads its first batch through SQLAlchemy and the rest from the driver's cursor,
so the sizes where the first read takes every row are the ones to try.
"""

import json
from collections.abc import Callable

import pytest

from tests.conftest import PASSWORD
from tests.helpers import AWKWARD_BODY, add_posts, export_document
from tests.test_api_tasks_consumer import call
from tests.test_export_consumer import start_export

pytestmark = pytest.mark.consumer
BATCH = 4  # small, so that a batch and one is quick to export


def export_from_the_page(site) -> tuple[str, Callable]:
    """Launch alice's export with the form (POST with CSRF); (task id, a function that
    downloads the file: status and parsed JSON)."""
    browser, task_id = start_export(site)

    def download():
        status, body, _ = browser.get(f"/exports/{task_id}")
        return status, json.loads(body)

    return task_id, download


def export_over_the_api(site) -> tuple[str, Callable]:
    """Launch alice's export with POST /api/tasks; (task id, a function that downloads the
    file through the link the API gives: status and parsed JSON)."""
    status, body, _ = call(site.url, "POST", "/api/tokens", basic=f"alice:{PASSWORD}")
    assert status == 200, body
    token = body["token"]
    status, task, _ = call(site.url, "POST", "/api/tasks", token, body={"name": "export_posts"})
    assert status == 202, task

    def download():
        _, current, _ = call(site.url, "GET", f"/api/tasks/{task['id']}", token)
        return call(site.url, "GET", current["_links"]["download"], token)[:2]

    return task["id"], download


@pytest.mark.parametrize("via", [export_from_the_page, export_over_the_api], ids=["page", "api"])
@pytest.mark.parametrize("count", [0, 1, BATCH - 1, BATCH, BATCH + 1])
def test_export_of_each_size_around_a_batch(app, users, live, via, count):
    # Inserted newest first, so that only the export's sort puts them oldest first.
    add_posts(app, users["alice"], count, body=AWKWARD_BODY, newest_first=True)
    add_posts(app, users["bob"], 2, body="bob {i}")
    site = live(MICROBLOG_EXPORT_BATCH_SIZE=BATCH)
    site.start_web()
    site.start_consumer()

    task_id, download = via(site)
    task = site.wait_for_status(task_id, "done", "failed")

    assert task["status"] == "done", (task, site.consumer_log()[-2000:])
    assert task["progress"] == 100
    status, export = download()
    assert status == 200
    assert [post["body"] for post in export["posts"]] == [
        AWKWARD_BODY.format(i=i) for i in range(count)
    ]
    timestamps = [post["timestamp"] for post in export["posts"]]
    assert timestamps == sorted(timestamps)
    assert export == export_document(app, users["alice"])
