"""Importing posts through /import, with the task run inline (Huey immediate mode)."""

import html
import io
import json
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import importing
import tasks
import worker
from database import db, isoformat_utc, utcnow
from jobs import Task
from models import POST_MAX, Post
from tests.conftest import PASSWORD
from tests.helpers import (
    AWKWARD_BODY,
    add_posts,
    boost,
    export_document,
    exported_posts,
    follow,
    toot,
    write_outbox,
)
from web import FORM_FIELDS_BYTES


def upload(client, data: bytes, filename="posts.json"):
    """POST the /import form with `data` as the file."""
    return client.submit(
        "/import",
        {"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def tasks_of(app, user_id):
    with app.app_context():
        rows = db.session.scalars(sa.select(Task).where(Task.user_id == user_id)).all()
        db.session.expunge_all()
        return rows


def post_count(app, user_id):
    with app.app_context():
        query = sa.select(sa.func.count()).where(Post.user_id == user_id)
        return db.session.execute(query).scalar_one()


def uploads_left(app):
    return list((Path(app.config["DATA_DIR"]) / "imports").glob("*"))


def test_import_page_needs_a_file(app, client, auth, users):
    auth.login()
    page = client.get("/import")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and 'type="file"' in html
    response = client.submit("/import", {}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Choose a file to import." in response.get_data(as_text=True)
    assert tasks_of(app, users["alice"]) == []


def test_import_our_export_into_another_account(app, client, auth, users, immediate):
    add_posts(app, users["bob"], ["first", 'ünïcode "quoted" </script> 😀', "third"])
    follow(app, users["bob"], users["carol"])
    posts = exported_posts(app, users["bob"])
    archive = json.dumps({"posts": posts, "following": ["carol", "nobody-here"]}).encode()
    auth.login()

    response = upload(client, archive)

    assert response.status_code == 302
    (task,) = tasks_of(app, users["alice"])
    assert (task.name, task.status, task.progress) == ("import_posts", "done", 100)
    assert task.status_text == "Imported 3 posts. Now following 1 more user."
    assert exported_posts(app, users["alice"]) == posts
    assert uploads_left(app) == []
    # The same file again adds nothing, and says so.
    upload(client, archive)
    task = max(tasks_of(app, users["alice"]), key=lambda t: t.created_at)
    assert task.status_text == "Imported 0 posts. 3 were already here."
    assert post_count(app, users["alice"]) == 3


def export_file(app, client, user_id) -> dict:
    """Export the signed-in user's posts (through the page) and read the file."""
    client.submit("/export_posts")
    task = max(
        (t for t in tasks_of(app, user_id) if t.name == "export_posts"), key=lambda t: t.created_at
    )
    assert task.status == "done", task.message
    return json.loads((Path(app.config["DATA_DIR"]) / "exports" / task.result_file).read_text())


def test_export_import_export_round_trip(app, client, auth, users, make_user, immediate):
    add_posts(app, users["alice"], 120, body=AWKWARD_BODY)
    add_posts(app, users["alice"], ["a post", "x" * 140])
    follow(app, users["alice"], users["bob"], users["carol"])
    auth.login("alice")
    first = export_file(app, client, users["alice"])
    assert first == export_document(app, users["alice"])
    assert [set(p) for p in first["posts"][:1]] == [{"id", "body", "timestamp"}]
    auth.logout()
    dave = make_user("dave")
    auth.login("dave", PASSWORD)

    upload(client, json.dumps(first).encode())
    second = export_file(app, client, dave)

    def without_ids(posts):
        return [{"body": p["body"], "timestamp": p["timestamp"]} for p in posts]

    assert without_ids(second["posts"]) == without_ids(first["posts"])
    assert len(second["posts"]) == 122
    assert second["following"] == ["bob", "carol"]
    assert second["profile"]["username"] == "dave"


def test_import_a_mastodon_archive(app, client, auth, users, immediate, tmp_path):
    outbox = tmp_path / "outbox.json"
    write_outbox(
        outbox,
        [
            toot(1, "<p>Hello <a href='https://x.example/'>world</a></p>"),
            boost(2),
            toot(3, "<p>a reply</p>", in_reply_to="https://elsewhere.example/statuses/9"),
            toot(4, "<p>" + "x" * 200 + "</p>"),
            toot(5, "<p>second</p>", published="2020-01-01T00:00:00Z"),
        ],
    )
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(outbox, "outbox.json")
        archive.writestr("actor.json", "{}")
    auth.login()

    upload(client, packed.getvalue(), "archive.zip")

    (task,) = tasks_of(app, users["alice"])
    assert task.status == "done", task.message
    assert task.status_text.startswith("Imported 2 posts. ")
    assert "Skipped 1 boost." in task.status_text
    assert "Skipped 1 reply to someone else." in task.status_text
    assert f"Skipped 1 post longer than {POST_MAX} characters" in task.status_text
    bodies = [p["body"] for p in exported_posts(app, users["alice"])]
    assert bodies == ["Hello world (https://x.example/)", "second"]


NOT_JSON = b"hello, this is not an archive"
CUT_SHORT = b'{"posts": [{"body": "a", "timestamp": "2024-05-01T12:00:00Z"}, {"bo'
# Year 1 an hour east of UTC: before year 1 in UTC, which datetime cannot hold.
BEFORE_YEAR_ONE = b'{"posts": [{"body": "a", "timestamp": "0001-01-01T00:00:00+01:00"}]}'


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"", "posts.json", "The file is empty."),
        (NOT_JSON, "posts.json", "neither a JSON file nor a zip archive"),
        (b'{"toots": []}', "posts.json", 'neither a Microblog export (with a "posts" list)'),
        (CUT_SHORT, "posts.json", "is not valid JSON"),
        (b"PK\x03\x04" + b"\0" * 100, "archive.zip", "zip"),
        (BEFORE_YEAR_ONE, "posts.json", 'Post 1 of this file has no valid "timestamp".'),
    ],
    ids=[
        "empty",
        "not json",
        "wrong shape",
        "cut short",
        "broken zip",
        "before year one",
    ],
)
def test_a_bad_file_fails_with_a_clear_message_and_imports_nothing(
    app, client, auth, users, immediate, data, filename, message
):
    auth.login()

    response = upload(client, data, filename)

    assert response.status_code == 302
    (task,) = tasks_of(app, users["alice"])
    assert task.status == "failed"
    assert message in task.status_text
    assert post_count(app, users["alice"]) == 0
    assert uploads_left(app) == []
    # The banner on the next page says why.
    page = client.get("/index").get_data(as_text=True)
    assert message.replace('"', "&#34;") in page or message in page


@pytest.mark.parametrize("app_config", [{"MICROBLOG_IMPORT_MAX_BYTES": 10_000}])
def test_upload_size_limits(app, client, auth, users, immediate):
    auth.login()
    # The limit, plus room for the form's other fields.
    assert upload(client, b"x" * (10_000 + FORM_FIELDS_BYTES + 1)).status_code == 413
    assert tasks_of(app, users["alice"]) == []
    # A file under the import limit but over the site's usual request limit is taken by
    # /import only.
    app.config["MAX_CONTENT_LENGTH"] = 1000
    good = json.dumps({"posts": [{"body": "p" * 100, "timestamp": "2024-05-01T12:00:00Z"}] * 30})
    assert 1000 < len(good) < 10_000
    assert upload(client, good.encode()).status_code == 302
    assert tasks_of(app, users["alice"])[0].status == "done"
    big_form = {"about_me": "x" * 2000, "username": "alice"}
    assert client.submit("/edit_profile", big_form).status_code == 413


def test_cancel_an_import_under_way(app, client, auth, users, immediate, monkeypatch):
    app.config["MICROBLOG_IMPORT_BATCH_SIZE"] = 10
    monkeypatch.setattr(worker, "PROGRESS_MIN_INTERVAL", 0)

    def cancel_after_the_first_batch(read):
        if read == 10:
            with app.app_context():
                (task,) = tasks_of(app, users["alice"])
                assert db.session.get_one(Task, task.id).cancel(tasks.huey) == "cancelling"

    monkeypatch.setattr(importing, "after_import_batch", cancel_after_the_first_batch)
    posts = [{"body": f"p{i}", "timestamp": f"2024-05-01T12:00:{i:02d}Z"} for i in range(50)]
    auth.login()

    upload(client, json.dumps({"posts": posts}).encode())

    (task,) = tasks_of(app, users["alice"])
    assert task.status == "cancelled"
    # What was added before the cancel stays; the rest never came.
    assert 10 <= post_count(app, users["alice"]) < 50
    assert uploads_left(app) == []


def test_posts_dated_before_1970_or_in_the_future_are_skipped_and_counted(
    app, client, auth, users, immediate
):
    # A post dated 9999 would be the newest post of /explore and of every home page for good.
    tomorrow_and_more = isoformat_utc(utcnow() + timedelta(days=1, minutes=5))
    stamps = ["1969-12-31T23:59:59Z", "2024-05-01T12:00:00Z", tomorrow_and_more]
    stamps.append("9999-12-31T23:59:59Z")
    posts = [{"body": f"post {i}", "timestamp": stamp} for i, stamp in enumerate(stamps)]
    auth.login()

    upload(client, json.dumps({"posts": posts}).encode())

    (task,) = tasks_of(app, users["alice"])
    assert task.status == "done", task.message
    assert task.status_text == (
        "Imported 1 post. Skipped 3 posts dated before 1970 or in the future."
    )
    assert exported_posts(app, users["alice"]) == [posts[1]]
    spanish = {"Accept-Language": "es"}
    page = html.unescape(client.get("/tasks", headers=spanish).get_data(as_text=True))
    assert (
        "Se importó 1 publicación. Se omitieron 3 publicaciones fechadas antes de 1970 o en "
        "el futuro." in page
    )
