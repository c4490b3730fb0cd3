"""Import end to end: gunicorn + a real huey_consumer subprocess, the upload through /import.

Our own export (made by the real export task) goes into another account; a Mastodon archive
the test builds goes in with its skipped items counted; a consumer killed mid-import is
replaced and the import resumes, adding each post once. A file the worker refuses loses its
upload; a failure that is not the file's keeps it, for the user's latest failed import only.
"""

import io
import json
import re
import signal
import sqlite3
import zipfile

import pytest

import importer
from tests.conftest import PASSWORD
from tests.helpers import (
    AWKWARD_BODY,
    add_posts,
    boost,
    exported_posts,
    outbox_zip,
    toot,
    with_extra_entries,
    write_outbox,
)
from tests.live import Browser, wait_for
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
    # The round trip: bob's export holds alice's posts, post by post, in the same order.
    _, again_id = start_export(site, "bob")
    assert site.wait_for_status(again_id, "done", "failed")["status"] == "done"
    status, again, _ = bob.get(f"/exports/{again_id}")
    assert status == 200
    alices, bobs = json.loads(archive)["posts"], json.loads(again)["posts"]
    assert len(alices) == len(bobs) == 1234
    for alice_post, bob_post in zip(alices, bobs, strict=True):
        assert (bob_post["body"], bob_post["timestamp"]) == (
            alice_post["body"],
            alice_post["timestamp"],
        )
    # The search index has the imported posts: alice's post 1233 and bob's copy of it.
    found = re.findall(r'id="post-(\d+)"', bob.get("/search?q=1233")[1].decode())
    assert len(found) == 2, found

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


# Year 1 an hour east of UTC is before year 1 in UTC: datetime overflows. An error that is
# not the file's would keep the upload (up to 2 GiB) for a retry.
BEFORE_YEAR_ONE = [
    {"body": "fine", "timestamp": "2024-05-01T12:00:00Z"},
    {"body": "a", "timestamp": "0001-01-01T00:00:00+01:00"},
]


def test_files_the_worker_must_refuse_fail_as_bad_and_their_uploads_go(app, users, live):
    site = live()
    site.start_web()
    site.start_consumer()
    # More entries in its central directory than an import allows, while its end record
    # says it holds one file: zipfile would have made an object of each.
    undercounted = with_extra_entries(
        outbox_zip([toot(1, "<p>hello</p>")]), importer.DEFAULT_LIMITS.zip_members, claimed=1
    )
    cases = [
        ("posts.json", json.dumps({"posts": BEFORE_YEAR_ONE}).encode()),
        ("archive.zip", undercounted),
    ]
    reasons = []
    for filename, data in cases:
        browser, task_id = start_import(site, filename, data)
        task = site.wait_for_status(task_id, "done", "failed")
        assert task["status"] == "failed", task
        reasons.append(task["text"])
        assert exported_posts(app, users["bob"]) == []
        assert not list((site.data_dir / "imports").iterdir())
    assert reasons == [
        'Post 2 of this file has no valid "timestamp".',
        "This zip archive is damaged or incomplete; download it again and retry.",
    ]
    assert b"This zip archive is damaged or incomplete" in browser.get("/tasks")[1]


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


def test_admin_retries_a_failed_import_from_its_upload(app, users, admin, live):
    # Every insert of an imported post fails until the test drops this trigger.
    site = live()
    site.start_web()
    site.start_consumer()
    execute(site, FAIL_IMPORTED_POSTS)
    posts = [{"body": f"post {i}", "timestamp": f"2024-05-01T12:00:{i:02d}Z"} for i in range(30)]
    _, task_id = start_import(site, "posts.json", json.dumps({"posts": posts}).encode())
    failed = site.wait_for_status(task_id, "done", "failed")
    assert failed["status"] == "failed" and "the disk is full" in failed["text"], failed
    # The failed import keeps its upload, for a retry.
    assert [p.name for p in (site.data_dir / "imports").iterdir()] == [task_id]

    execute(site, "DROP TRIGGER fail_imported_posts")
    root = Browser(site.url)
    root.login("root", PASSWORD)
    status, page = root.submit(f"/admin/jobs/{task_id}/retry", token_from="/admin/jobs")
    assert status == 200 and b"started again for bob" in page, page[:2000]
    again = site.task()
    assert again["id"] != task_id and again["name"] == "import_posts"
    done = site.wait_for_status(again["id"], "done", "failed")
    assert (done["status"], done["text"]) == ("done", "Imported 30 posts."), done
    assert exported_posts(app, users["bob"]) == posts
    # Done: the upload is gone, and a second retry of the old failure says why it cannot run.
    assert not list((site.data_dir / "imports").iterdir())
    status, page = root.submit(f"/admin/jobs/{task_id}/retry", token_from="/admin/jobs")
    assert b"needs to upload it again" in page, page[:2000]
    assert site.task()["id"] == again["id"]


def test_only_the_newest_failed_import_keeps_its_upload(app, users, admin, live):
    # Each failed import kept its upload (up to 2 GiB) for a week: a user could fill the
    # disk by failing imports. A newer failure replaces the older one's upload.
    site = live()
    site.start_web()
    site.start_consumer()
    execute(site, FAIL_IMPORTED_POSTS)
    imports = site.data_dir / "imports"
    failed = []
    for n in range(3):
        posts = [{"body": f"post {n}", "timestamp": "2024-05-01T12:00:00Z"}]
        _, task_id = start_import(site, "posts.json", json.dumps({"posts": posts}).encode())
        task = site.wait_for_status(task_id, "done", "failed")
        assert task["status"] == "failed" and "the disk is full" in task["text"], task
        failed.append(task_id)
        # The row says "failed" a moment before the worker has deleted the older upload.
        wait_for(lambda: [p.name for p in imports.iterdir()] == failed[-1:], what="one upload")
    # An import that succeeds leaves the newest failure's upload alone, for its retry.
    execute(site, "DROP TRIGGER fail_imported_posts")
    posts = [{"body": "works", "timestamp": "2024-05-01T12:00:00Z"}]
    _, done_id = start_import(site, "posts.json", json.dumps({"posts": posts}).encode())
    assert site.wait_for_status(done_id, "done", "failed")["status"] == "done"
    assert [p.name for p in imports.iterdir()] == [failed[-1]]

    root = Browser(site.url)
    root.login("root", PASSWORD)
    status, page = root.submit(f"/admin/jobs/{failed[0]}/retry", token_from="/admin/jobs")
    assert b"needs to upload it again" in page, page[:2000]
    status, page = root.submit(f"/admin/jobs/{failed[-1]}/retry", token_from="/admin/jobs")
    assert b"started again for bob" in page, page[:2000]
    again = site.task()
    done = site.wait_for_status(again["id"], "done", "failed")
    assert (done["status"], done["text"]) == ("done", "Imported 1 post."), done
    assert not list(imports.iterdir())


FAIL_IMPORTED_POSTS = (
    "CREATE TRIGGER fail_imported_posts BEFORE INSERT ON post "
    "WHEN new.import_key IS NOT NULL BEGIN SELECT RAISE(ABORT, 'the disk is full'); END"
)


def execute(site, sql):
    connection = sqlite3.connect(site.data_dir / "app.db", timeout=10)
    try:
        connection.execute(sql)
        connection.commit()
    finally:
        connection.close()
