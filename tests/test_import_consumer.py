"""Import end to end: gunicorn + a real huey_consumer subprocess, the upload through /import.

Our own export (made by the real export task) goes into another account; a Mastodon archive
the test builds goes in with its skipped items counted; a consumer killed mid-import is
replaced and the import resumes, adding each post once.
"""

import io
import json
import signal
import zipfile

import pytest

from tests.conftest import PASSWORD
from tests.helpers import AWKWARD_BODY, add_posts, boost, exported_posts, toot, write_outbox
from tests.live import Browser
from tests.test_export_consumer import FAST_BEATS, start_export, under_way

pytestmark = pytest.mark.consumer


def start_import(site, filename, data, username="bob"):
    browser = Browser(site.url)
    browser.login(username, PASSWORD)
    status, body = browser.upload("/import", filename, data)
    assert status == 200, body[:300]
    task = site.task()
    assert task["name"] == "import_posts", task
    return browser, task["id"]


def test_import_our_export_and_a_mastodon_archive(app, users, live, tmp_path):
    add_posts(app, users["alice"], 1234, body=AWKWARD_BODY)
    site = live(MICROBLOG_IMPORT_BATCH_SIZE=100)
    site.start_web()
    site.start_consumer()
    alice, export_id = start_export(site)
    assert site.wait_for_status(export_id, "done", "failed")["status"] == "done"
    status, archive, _ = alice.get(f"/exports/{export_id}")
    assert status == 200

    bob, task_id = start_import(site, "posts.json", archive)
    task = site.wait_for_status(task_id, "done", "failed")

    assert (task["status"], task["progress"]) == ("done", 100), task
    assert task["text"] == "Imported 1,234 posts."
    assert exported_posts(app, users["bob"]) == exported_posts(app, users["alice"])
    assert b"Imported 1,234 posts." in bob.get("/tasks")[1]
    assert not list((site.data_dir / "imports").iterdir())

    outbox = tmp_path / "outbox.json"
    write_outbox(outbox, [toot(1, "<p>from Mastodon</p>"), boost(2), toot(3, "<p>again</p>")])
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.write(outbox, "outbox.json")
    _, task_id = start_import(site, "archive.zip", packed.getvalue())
    task = site.wait_for_status(task_id, "done", "failed")
    assert task["text"] == "Imported 2 posts. Skipped 1 boost.", task
    assert len(exported_posts(app, users["bob"])) == 1236


def test_a_bad_file_fails_in_the_worker_with_its_reason(app, users, live):
    site = live()
    site.start_web()
    site.start_consumer()
    browser, task_id = start_import(site, "posts.json", b'{"posts": [{"body": "cut')
    task = site.wait_for_status(task_id, "done", "failed")
    assert task["status"] == "failed"
    assert "is not valid JSON" in task["text"]
    assert b"is not valid JSON" in browser.get("/tasks")[1]
    assert exported_posts(app, users["bob"]) == []


def test_a_killed_consumer_and_the_import_resumes(app, users, live):
    posts = [
        {"body": f"post {i}", "timestamp": f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}Z"}
        for i in range(600)
    ]
    site = live(MICROBLOG_IMPORT_BATCH_SIZE=20, **FAST_BEATS)
    site.start_web()
    consumer = site.start_consumer(pause_per_batch=0.1)
    browser, task_id = start_import(site, "posts.json", json.dumps({"posts": posts}).encode())
    under_way(site, task_id, 50)  # past the check pass: some batches are in

    site.stop_consumer(consumer, signal.SIGKILL)
    site.start_consumer(pause_per_batch=0.01)
    task = site.wait_for_status(task_id, "done", "failed")

    assert (task["status"], task["crashes"]) == ("done", 1), task
    assert task["text"] == "Imported 600 posts."
    assert exported_posts(app, users["bob"]) == posts
    assert not list((site.data_dir / "imports").iterdir())
