"""Background tasks in Huey immediate mode: lifecycle, progress, one-active rule, cancel, expiry."""

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

import exporting
import jobs
import tasks
import worker
from database import db, utcnow
from exporting import export_posts, write_export
from jobs import Consumer, Task, TaskStatus
from models import ApiToken, User
from notifications import Notification
from tests.conftest import PASSWORD
from tests.helpers import add_posts, export_document
from tests.live import wait_for
from user_tasks import launch_task, task_history


def only_task(app, user_id=None):
    with app.app_context():
        query = sa.select(Task)
        if user_id is not None:
            query = query.where(Task.user_id == user_id)
        rows = db.session.scalars(query).all()
        assert len(rows) == 1, rows
        db.session.expunge_all()
        return rows[0]


def export_path(app, task):
    return Path(app.config["DATA_DIR"]) / "exports" / f"{task.id}.json"


def test_export_lifecycle(app, client, auth, users, immediate):
    # Inserted newest first: the export must sort them.
    add_posts(app, users["alice"], 25, newest_first=True)
    add_posts(app, users["bob"], 3, newest_first=True)
    auth.login()

    response = client.submit("/export_posts")

    assert response.status_code == 302
    assert response.headers["Location"] == "/user/alice"
    task = only_task(app)
    assert (task.name, task.user_id, task.status, task.progress) == (
        "export_posts",
        users["alice"],
        "done",
        100,
    )
    assert task.created_at <= task.started_at <= task.finished_at
    assert task.message == "Your export is ready to download."  # no MAIL_SERVER
    assert timedelta(days=6.9) < task.expires_at - task.finished_at <= timedelta(days=7)
    data = json.loads(export_path(app, task).read_text())
    assert data == export_document(app, users["alice"])
    assert data["posts"][0]["body"] == "post 0"  # oldest first
    assert task.result_size == export_path(app, task).stat().st_size
    assert not list(export_path(app, task).parent.glob("*.part"))

    page = client.get("/user/alice").get_data(as_text=True)
    assert "Your export is ready" in page and f"/exports/{task.id}" in page
    notes = client.get("/notifications?since=0").get_json()
    assert [n["name"] for n in notes] == ["task_progress"]
    assert notes[0]["data"]["task_id"] == task.id
    assert notes[0]["data"]["status"] == "done"
    assert notes[0]["data"]["result_size"] == task.result_size


def test_export_of_no_posts(app, client, auth, users, immediate):
    auth.login()
    client.submit("/export_posts")
    task = only_task(app)
    assert task.status == "done"
    assert json.loads(export_path(app, task).read_text()) == {
        "version": 2,
        "profile": {"username": "alice", "about_me": None, "avatar": None},
        "posts": [],
        "following": [],
    }


def test_progress_is_monotonic_and_bounded(app, client, auth, users, immediate, monkeypatch):
    add_posts(app, users["alice"], 1000, newest_first=True)
    app.config["MICROBLOG_EXPORT_BATCH_SIZE"] = 7
    monkeypatch.setattr(worker, "PROGRESS_MIN_INTERVAL", 0)
    seen = []
    notify = Task.notify
    monkeypatch.setattr(
        Task, "notify", lambda self: seen.append(self.to_notification()) or notify(self)
    )
    auth.login()

    client.submit("/export_posts")

    statuses = [s["status"] for s in seen]
    assert statuses[:2] == ["queued", "running"] and statuses[-1] == "done"
    assert set(statuses) == {"queued", "running", "done"}
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress)
    assert progress[-1] == 100
    assert (
        50 < len(seen) <= 106
    )  # every percent once (and "queued"), not once per batch (143) or post
    assert only_task(app).status == "done"


def test_two_concurrent_launches_start_one_task(app, users, immediate, monkeypatch):
    add_posts(app, users["alice"], 50, newest_first=True)
    # The export that starts holds after its first batch until the other launch has returned:
    # that launch must find it still running.
    returned = threading.Event()
    monkeypatch.setattr(exporting, "after_export_batch", lambda _done: returned.wait(timeout=10))
    barrier = threading.Barrier(2)
    results = []

    def launch():
        with app.app_context():
            user = db.session.get(User, users["alice"])
            barrier.wait()
            task = launch_task(user, export_posts, "Exporting your posts")
            results.append(task.id if task else None)
            returned.set()

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results, key=str) == sorted([None, only_task(app).id], key=str)
    assert only_task(app).status == "done"


def test_second_request_while_active_says_so(app, client, auth, users, immediate):
    with app.app_context():
        db.session.add(
            Task(id="busy", name="export_posts", description="Exporting", user_id=users["alice"])
        )
        db.session.commit()
    auth.login()

    response = client.submit("/export_posts", follow_redirects=True)

    assert "already in progress" in response.get_data(as_text=True)
    assert only_task(app).id == "busy"


def test_database_allows_one_active_task_per_user_and_name(app, users):
    with app.app_context():
        db.session.add(Task(id="a", name="export_posts", description="x", user_id=users["alice"]))
        db.session.add(Task(id="b", name="export_posts", description="x", user_id=users["bob"]))
        db.session.add(
            Task(
                id="c", name="export_posts", description="x", user_id=users["alice"], status="done"
            )
        )
        db.session.commit()
        db.session.add(Task(id="d", name="export_posts", description="x", user_id=users["alice"]))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()


def test_export_requires_post_with_csrf(app, client, auth, users, immediate):
    auth.login()
    assert client.get("/export_posts").status_code == 405
    assert client.post("/export_posts").status_code == 400
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 0


def test_failed_enqueue_marks_the_task_failed(app, client, auth, users, monkeypatch):
    def broken(_task):
        raise ConnectionError("queue unreachable")

    monkeypatch.setattr(tasks.huey, "enqueue", broken)
    auth.login()

    response = client.submit("/export_posts", follow_redirects=True)

    assert "could not be started" in response.get_data(as_text=True)
    task = only_task(app)
    assert task.status == "failed" and "queue unreachable" in task.message
    assert task.finished_at is not None


def test_exception_in_export_fails_the_task(app, client, auth, users, immediate, monkeypatch):
    def broken(task_id, user_id):
        raise ValueError("disk on fire")

    monkeypatch.setattr(exporting, "write_export", broken)
    auth.login()

    client.submit("/export_posts")

    task = only_task(app)
    assert (task.status, task.message) == ("failed", "disk on fire")
    page = client.get("/tasks").get_data(as_text=True)
    assert "failed" in page and "disk on fire" in page
    # Not retried: retries are for the email only.
    assert tasks.huey.scheduled_count() == 0


# --- download -------------------------------------------------------------------------


@pytest.fixture
def finished_export(app, client, auth, users, immediate):
    add_posts(app, users["alice"], 5, newest_first=True)
    auth.login()
    client.submit("/export_posts")
    return only_task(app)


def test_owner_downloads_the_export(app, client, finished_export):
    with client.get(f"/exports/{finished_export.id}") as response:
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        assert "posts.json" in response.headers["Content-Disposition"]
        data = json.loads(response.data)
    assert data == export_document(app, finished_export.user_id)


def test_others_and_anonymous_get_404(client, auth, finished_export):
    url = f"/exports/{finished_export.id}"
    auth.logout()
    assert client.get(url).status_code == 404
    auth.login("bob")
    assert client.get(url).status_code == 404
    assert client.get("/exports/no-such-task").status_code == 404


def test_task_history(client, finished_export):
    page = client.get("/tasks").get_data(as_text=True)
    assert "Exporting your posts" in page
    assert "done" in page and f"/exports/{finished_export.id}" in page


def test_history_shows_only_own_tasks(client, auth, finished_export):
    auth.logout()
    auth.login("bob")
    page = client.get("/tasks").get_data(as_text=True)
    assert finished_export.id not in page and "No tasks yet" in page


def test_expired_exports_are_deleted(app, client, finished_export):
    path = export_path(app, finished_export)
    with app.app_context():
        task = db.session.get(Task, finished_export.id)
        task.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert client.get(f"/exports/{finished_export.id}").status_code == 404  # before the cleanup

    with app.app_context():
        assert tasks.delete_expired_exports.call_local() == 1

    assert not path.exists()
    assert only_task(app).result_file is None
    page = client.get("/tasks").get_data(as_text=True)
    assert "Expired" in page and f'href="/exports/{finished_export.id}"' not in page
    with app.app_context():
        assert tasks.delete_expired_exports.call_local() == 0


def test_unexpired_exports_are_kept(app, finished_export):
    with app.app_context():
        assert tasks.delete_expired_exports.call_local() == 0
    assert export_path(app, finished_export).exists()


def test_dismiss_hides_the_banner(app, client, finished_export):
    assert "Your export is ready" in client.get("/index").get_data(as_text=True)
    response = client.submit(f"/tasks/{finished_export.id}/dismiss?next=/index")
    assert response.headers["Location"] == "/index"
    assert "Your export is ready" not in client.get("/index").get_data(as_text=True)
    assert only_task(app).dismissed


def test_other_users_cannot_dismiss_or_cancel(client, auth, finished_export):
    auth.logout()
    auth.login("bob")
    assert client.submit(f"/tasks/{finished_export.id}/dismiss").status_code == 404
    assert client.submit(f"/tasks/{finished_export.id}/cancel").status_code == 404


# --- cancel -----------------------------------------------------------------------------


def queued_task(app, user_id, task_id="queued-1"):
    with app.app_context():
        db.session.add(
            Task(id=task_id, name="export_posts", description="Exporting", user_id=user_id)
        )
        db.session.commit()
    return task_id


def test_cancel_a_queued_task_revokes_it(app, client, auth, users, immediate):
    task_id = queued_task(app, users["alice"])
    auth.login()

    response = client.submit(f"/tasks/{task_id}/cancel", follow_redirects=True)

    assert "cancelled" in response.get_data(as_text=True)
    assert only_task(app).status == "cancelled"
    # When the consumer reaches the message, Huey skips it and the row stays cancelled.
    with app.app_context():
        tasks.huey.execute(export_posts.task_class((users["alice"],), None, id=task_id))
    task = only_task(app)
    assert task.status == "cancelled" and task.result_file is None
    assert not (Path(app.config["DATA_DIR"]) / "exports" / f"{task_id}.json").exists()


def test_cancel_requires_csrf(app, client, auth, users, immediate):
    task_id = queued_task(app, users["alice"])
    auth.login()
    assert client.post(f"/tasks/{task_id}/cancel").status_code == 400
    assert only_task(app).status == "queued"


def test_cancel_a_running_export(app, users, immediate, monkeypatch):
    add_posts(app, users["alice"], 200, newest_first=True)
    app.config["MICROBLOG_EXPORT_BATCH_SIZE"] = 10
    monkeypatch.setattr(worker, "PROGRESS_MIN_INTERVAL", 0)
    # After its second batch (the first one's progress is written by then) the export holds
    # until the cancel request has been answered.
    answered = threading.Event()

    def hold_after_second_batch(done):
        if done >= 20:
            answered.wait(timeout=30)

    monkeypatch.setattr(exporting, "after_export_batch", hold_after_second_batch)
    exporter, canceller = app.test_client(), app.test_client()
    for client in (exporter, canceller):
        client.submit("/login", {"username": "alice", "password": PASSWORD})
    request = threading.Thread(target=exporter.submit, args=("/export_posts",))
    request.start()
    task_id = wait_for(lambda: running_task_id(app, users["alice"]), what="the export to start")

    response = canceller.submit(f"/tasks/{task_id}/cancel", follow_redirects=True)
    answered.set()
    request.join(timeout=30)

    assert "Cancelling…" in response.get_data(as_text=True)  # said once, by the task itself
    task = only_task(app)
    assert task.status == "cancelled" and task.finished_at is not None
    assert 0 < task.progress < 100
    exports = Path(app.config["DATA_DIR"]) / "exports"
    assert list(exports.iterdir()) == []  # neither the file nor its partial remains


def running_task_id(app, user_id):
    with app.app_context():
        return db.session.scalar(
            sa.select(Task.id).where(
                Task.user_id == user_id, Task.status == "running", Task.progress > 0
            )
        )


# --- lost workers ----------------------------------------------------------------------


def test_reaper_fails_running_tasks_with_a_stale_heartbeat(app, users, immediate):
    with app.app_context():
        old = utcnow() - timedelta(seconds=app.config["MICROBLOG_TASK_STALE_SECONDS"] + 5)
        db.session.add_all(
            [
                Task(id="lost", name="export_posts", description="x", user_id=users["alice"],
                     status="running", updated_at=old),
                Task(id="alive", name="export_posts", description="x", user_id=users["bob"],
                     status="running"),
                Task(id="waiting", name="export_posts", description="x", user_id=users["carol"],
                     updated_at=old),
            ]
        )  # fmt: skip
        db.session.commit()

    with app.app_context():
        assert tasks.reap_stale_tasks.call_local() == 1
        status = dict(db.session.execute(sa.select(Task.id, Task.status)).all())
        assert status == {"lost": "failed", "alive": "running", "waiting": "queued"}
        lost = db.session.get(Task, "lost")
        assert "background worker stopped" in lost.message
        assert lost.finished_at is not None
        note = db.session.scalar(
            sa.select(Notification).where(Notification.user_id == lost.user_id)
        )
        assert note.get_data()["status"] == "failed"
        # The user can start a new export straight away.
        user = db.session.get(User, users["alice"])
        assert launch_task(user, export_posts, "Exporting your posts").status == "done"


def test_page_says_when_the_worker_is_not_running(app, client, auth, users, immediate):
    queued_task(app, users["alice"])
    auth.login()
    assert "background worker is not running" in client.get("/index").get_data(as_text=True)

    with app.app_context():
        worker.record_consumer_heartbeat()
    assert "background worker is not running" not in client.get("/index").get_data(as_text=True)

    with app.app_context():
        silent = utcnow() - timedelta(seconds=app.config["MICROBLOG_CONSUMER_SILENT_SECONDS"] + 1)
        db.session.execute(sa.update(Consumer).values(heartbeat_at=silent))
        db.session.commit()
    assert "background worker is not running" in client.get("/index").get_data(as_text=True)


def test_no_worker_notice_without_a_queued_task(client, auth, users, immediate):
    auth.login()
    assert "background worker is not running" not in client.get("/index").get_data(as_text=True)


def test_banner_shows_an_active_task_with_its_progress(app, client, auth, users):
    with app.app_context():
        db.session.add(
            Task(id="t1", name="export_posts", description="Exporting your posts",
                 user_id=users["alice"], status="running", progress=42)
        )  # fmt: skip
        db.session.commit()
    auth.login()
    page = client.get("/explore").get_data(as_text=True)
    assert 'data-task-id="t1"' in page
    assert 'aria-valuenow="42"' in page and "42%" in page
    assert "/tasks/t1/cancel" in page


def test_queued_tasks_go_to_the_tests_own_queue(app, client, auth, private_queue, tmp_path):
    auth.login()
    client.submit("/export_posts")  # no consumer: it stays queued
    assert private_queue.pending_count() == 1
    assert private_queue.storage.filename == str(tmp_path / "huey.db")
    assert (tmp_path / "huey.db").exists()


def test_a_task_is_in_the_notifications_from_the_moment_it_is_queued(client, auth, users):
    auth.login()
    client.submit("/export_posts")  # no consumer: it stays queued

    (note,) = [n for n in client.get("/notifications?since=0").json if n["name"] == "task_progress"]
    assert note["data"]["status"] == "queued"
    assert note["data"]["message"] == TaskStatus.QUEUED.default_text


def test_a_cancel_that_comes_too_late_says_so_everywhere(app, client, auth, users, immediate):
    task_id = queued_task(app, users["alice"])
    with app.app_context():
        Task.change(task_id, [TaskStatus.QUEUED], status=TaskStatus.RUNNING)
    auth.login()
    client.submit(f"/tasks/{task_id}/cancel")  # the task is sending its mail: too late to stop
    with app.app_context():
        assert db.session.get(Task, task_id).status_text == jobs.TASK_TEXT_CANCELLING
        Task.finish(task_id)
        token, _ = ApiToken.issue(db.session.get(User, users["alice"]))
        db.session.commit()

    late = jobs.TASK_TEXT_CANCEL_TOO_LATE
    api_task = client.get(f"/api/tasks/{task_id}", headers={"Authorization": f"Bearer {token}"})
    assert (api_task.json["status"], api_task.json["message"]) == ("done", late)
    assert late in client.get(f"/tasks/{task_id}/banner").get_data(as_text=True)
    assert late in client.get("/index").get_data(as_text=True)
    assert late in client.get("/tasks").get_data(as_text=True)
    (note,) = [n for n in client.get("/notifications?since=0").json if n["name"] == "task_progress"]
    assert note["data"]["message"] == late
    assert "Cancelling" not in client.get("/tasks").get_data(as_text=True)


def test_export_keeps_the_newest_finished_files(app, client, auth, users, immediate, monkeypatch):
    app.config["MICROBLOG_EXPORT_KEEP"] = 2
    add_posts(app, users["alice"], 3)
    auth.login()
    for _ in range(3):
        client.submit("/export_posts")

    with app.app_context():
        rows = db.session.scalars(task_history(db.session.get_one(User, users["alice"]))).all()
        assert [row.status for row in rows] == ["done"] * 3
        assert [bool(row.result_file) for row in rows] == [True, True, False]
        assert rows[2].download_expired
    files = sorted(path.name for path in (Path(app.config["DATA_DIR"]) / "exports").iterdir())
    assert files == sorted(f"{row.id}.json" for row in rows[:2])


class Crash(BaseException):
    """Stands for the worker dying mid-export: nothing in the task catches it."""


def export_crashing_once_then_resumed(
    app, user_id, monkeypatch, crash_at=21, checkpointed=14
) -> tuple[bytes, list]:
    """Export `user_id`'s posts in batches of 7 with a crash once `crash_at` posts are
    written (`checkpointed` of them in the last checkpoint) and a second run after it;
    returns the file and what it must hold. Checkpoints at every batch (no rate limit)."""
    app.config["MICROBLOG_EXPORT_BATCH_SIZE"] = 7
    monkeypatch.setattr(worker, "PROGRESS_MIN_INTERVAL", 0)

    def crash(done):
        if done == crash_at:
            raise Crash()

    expected = export_document(app, user_id)
    with app.app_context():
        db.session.add(Task(id="t1", name="export_posts", description="x", user_id=user_id,
                            status="running"))  # fmt: skip
        db.session.commit()
        monkeypatch.setattr(exporting, "after_export_batch", crash)
        with pytest.raises(Crash):
            write_export("t1", user_id)
        # The last batch was written but not checkpointed: the resumed run writes it again.
        assert json.loads(db.session.get(Task, "t1").checkpoint)["done"] == checkpointed
        monkeypatch.setattr(exporting, "after_export_batch", None)
        name, count, _size = write_export("t1", user_id)
        assert count == len(expected["posts"])
        content = (Path(app.config["DATA_DIR"]) / "exports" / name).read_bytes()
    return content, expected


def test_a_resumed_export_has_every_post_once_in_order(app, users, monkeypatch):
    # Posts sharing a timestamp: only (timestamp, id) tells where the last batch stopped.
    moments = [utcnow() - timedelta(minutes=i // 4) for i in range(50, 0, -1)]
    add_posts(app, users["alice"], 50, timestamps=moments, newest_first=True)

    content, expected = export_crashing_once_then_resumed(app, users["alice"], monkeypatch)

    assert json.loads(content) == expected


def test_a_resumed_export_with_one_post_left(app, users, monkeypatch):
    # A batch of 7 and one of 1; the crash after the second leaves one post for the resumed
    # run, whose query then has a single row.
    add_posts(app, users["alice"], 8, newest_first=True)

    content, expected = export_crashing_once_then_resumed(
        app, users["alice"], monkeypatch, crash_at=8, checkpointed=7
    )

    assert json.loads(content) == expected


def test_an_idle_worker_is_woken_by_the_next_enqueue(tmp_path, monkeypatch):
    """A worker waiting on an empty SQLite queue gets a task as soon as another process
    queues it (its doorbell rings), not at its next look at the queue."""
    monkeypatch.setattr(worker, "IDLE_WAIT_SECONDS", 600)
    consumer_side = worker.LazySqliteStorage("bell", filename=str(tmp_path / "huey.db"))
    web_side = worker.LazySqliteStorage("bell", filename=str(tmp_path / "huey.db"))
    received = []

    def work():  # as Huey's worker: ask again at once after an empty answer
        while (data := consumer_side.dequeue()) is None:
            pass
        received.append(data)

    dequeuing = threading.Thread(target=work, daemon=True)
    dequeuing.start()
    wait_for(lambda: list((tmp_path / "doorbells").glob("*.sock")), what="the doorbell")

    web_side.enqueue(b"a task")

    dequeuing.join(timeout=30)
    assert received == [b"a task"]
    consumer_side.close_doorbell()
    assert not list((tmp_path / "doorbells").iterdir())


def test_the_doorbell_of_a_dead_consumer_is_forgotten(tmp_path):
    bell = worker.Doorbell(tmp_path)
    bell.sock.close()  # as when its process is killed: the file stays, nobody listens

    worker.Doorbell.ring_all(tmp_path)

    assert not list(tmp_path.iterdir())
