"""The admin area: who may see it, account changes, deletion, creation and the jobs dashboard;
disabled accounts and closed registration on the web."""

import os
import re
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

import administration
import tasks
import worker
from database import db, utcnow
from jobs import Consumer, Task, TaskStatus
from mailboxes import Mailbox
from models import ApiToken, Message, Post, User, followers
from notifications import Notification, notify
from task_support import upload_path
from tests.conftest import PASSWORD
from tests.helpers import add_posts, follow

ADMIN_PAGES = ["/admin/", "/admin/users/new", "/admin/jobs", "/admin/jobs/status"]


def user_row(app, username) -> User | None:
    with app.app_context():
        user = db.session.scalar(User.named(username))
        if user is not None:
            db.session.expunge(user)
        return user


@pytest.fixture
def as_admin(client, auth, admin):
    auth.login("root")
    return client


# --- who may see it ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admin_pages_are_404_for_visitors_and_users(client, auth, users, url):
    assert client.get(url).status_code == 404
    auth.login("alice")
    assert client.get(url).status_code == 404
    assert "Admin" not in client.get("/index").get_data(as_text=True)


@pytest.mark.parametrize("url", ["/admin/users/1/disable", "/admin/users/1/delete"])
def test_admin_actions_are_404_for_users(app, client, auth, users, url):
    auth.login("alice")
    assert client.submit(url).status_code == 404
    assert not user_row(app, "alice").disabled


@pytest.mark.parametrize("url", ADMIN_PAGES)
def test_admins_see_the_admin_pages(as_admin, url):
    assert as_admin.get(url).status_code == 200
    assert 'href="/admin/"' in as_admin.get("/index").get_data(as_text=True)


# --- the users list -----------------------------------------------------------------------------


def test_users_are_listed_searched_and_paged(as_admin, make_user, users):
    make_user("zed_100%", email="zed@other.org")
    # Three per page (the tests' POSTS_PER_PAGE), by username.
    assert listed(as_admin, "/admin/") == ["alice", "bob", "carol"]
    assert "/admin/?q=&amp;page=2" in as_admin.get("/admin/").get_data(as_text=True)
    assert listed(as_admin, "/admin/?page=2") == ["root", "zed_100%"]

    assert listed(as_admin, "/admin/?q=OTHER.org") == ["zed_100%"]
    assert listed(as_admin, "/admin/?q=RO") == ["carol", "root"]
    # % and _ are matched as typed, not as wildcards.
    assert listed(as_admin, "/admin/?q=100%25") == ["zed_100%"]
    assert listed(as_admin, "/admin/?q=a_i") == []
    assert "No user matches" in as_admin.get("/admin/?q=a_i").get_data(as_text=True)


def listed(client, url) -> list[str]:
    """The usernames in the users table of that page."""
    return re.findall(r'<tr data-username="([^"]+)"', client.get(url).get_data(as_text=True))


@pytest.mark.parametrize(
    ("change", "field", "before", "after"),
    [
        ("disable", "disabled", False, True),
        ("make-admin", "is_admin", False, True),
    ],
)
def test_admin_changes_an_account(app, as_admin, users, change, field, before, after):
    assert getattr(user_row(app, "bob"), field) is before
    response = as_admin.submit(f"/admin/users/{users['bob']}/{change}?q=bo")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/?q=bo"
    assert getattr(user_row(app, "bob"), field) is after
    undo = {"disable": "enable", "make-admin": "remove-admin"}[change]
    as_admin.submit(f"/admin/users/{users['bob']}/{undo}")
    assert getattr(user_row(app, "bob"), field) is before


def test_admin_cannot_lock_themselves_out(app, as_admin, admin):
    for change in ("disable", "remove-admin"):
        response = as_admin.submit(f"/admin/users/{admin}/{change}", follow_redirects=True)
        assert "cannot disable, demote or delete your own account" in response.get_data(
            as_text=True
        )
    as_admin.submit(f"/admin/users/{admin}/delete")
    root = user_row(app, "root")
    assert root is not None and root.is_admin and not root.disabled


@pytest.mark.parametrize("change", ["disable", "remove-admin", "delete"])
def test_two_admins_removing_each_other_at_once_leave_one_admin(
    app, admin, users, monkeypatch, change
):
    """Each admin may change the other, but not both at once: the site keeps an admin."""
    with app.app_context():
        administration.make_admin(db.session.get_one(User, users["bob"]))
        db.session.commit()
    targets = {"root": users["bob"], "bob": admin}
    clients = {}
    for name in targets:
        clients[name] = app.test_client()
        clients[name].submit("/login", {"username": name, "password": PASSWORD})
    # Both requests are past the admin check and at the rule before either goes on.
    both_in = threading.Barrier(2, timeout=10)
    rule = administration.refuse_admin_change

    def rule_once_both_are_in(*args, **kwargs):
        both_in.wait()
        return rule(*args, **kwargs)

    monkeypatch.setattr(administration, "refuse_admin_change", rule_once_both_are_in)
    threads = [
        threading.Thread(target=clients[name].submit, args=(f"/admin/users/{target}/{change}",))
        for name, target in targets.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with app.app_context():
        enabled = sa.select(User.username).where(User.is_admin, User.disabled.is_(False))
        (survivor,) = db.session.scalars(enabled).all()
    (removed,) = set(targets) - {survivor}
    # The survivor's change went through; the other's, second, was refused with a reason.
    assert flashes(clients[survivor])[0][0] == "success"
    assert flashes(clients[removed]) == [
        ("warning", "That is the last enabled admin: make another account an admin first.")
    ]


def flashes(client) -> list[tuple[str, str]]:
    """The messages flashed to `client`'s session and not shown yet: (category, text)."""
    with client.session_transaction() as session:
        return list(session.get("_flashes", []))


def test_unknown_user_or_change_is_404(as_admin, users):
    assert as_admin.submit("/admin/users/9999/disable").status_code == 404
    assert as_admin.submit(f"/admin/users/{users['bob']}/promote").status_code == 404
    assert as_admin.get(f"/admin/users/{users['bob']}/disable").status_code == 405


def test_changes_need_the_csrf_token(app, as_admin, users):
    assert as_admin.post(f"/admin/users/{users['bob']}/disable").status_code == 400
    assert not user_row(app, "bob").disabled


# --- disabled accounts --------------------------------------------------------------------------


def test_disabling_ends_the_session_at_once_and_refuses_sign_in(app, client, auth, admin, users):
    auth.login("bob")
    assert client.get("/index").status_code == 200
    with app.app_context():
        administration.disable(db.session.get_one(User, users["bob"]))
        db.session.commit()
    # The same session cookie, the very next request.
    response = client.get("/index")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")

    response = auth.login("bob")
    assert response.status_code == 401
    assert "Invalid username or password" in response.get_data(as_text=True)

    with app.app_context():
        administration.enable(db.session.get_one(User, users["bob"]))
        db.session.commit()
    assert auth.login("bob").status_code == 302


def test_disabling_deletes_the_api_tokens_and_keeps_the_posts(app, users):
    add_posts(app, users["bob"], 2)
    with app.app_context():
        bob = db.session.get_one(User, users["bob"])
        token, _ = ApiToken.issue(bob)
        db.session.commit()
        administration.disable(bob)
        db.session.commit()
        assert ApiToken.find(token) is None
        assert db.session.scalar(sa.select(sa.func.count(ApiToken.id))) == 0
        assert bob.posts_count() == 2


# --- deleting -----------------------------------------------------------------------------------


def test_delete_asks_first_then_removes_everything(app, as_admin, users, tmp_path):
    bob = users["bob"]
    add_posts(app, bob, 3)
    follow(app, bob, users["alice"])
    follow(app, users["alice"], bob)
    export = tmp_path / "exports" / "bobs.json"
    export.parent.mkdir()
    export.write_text("{}")
    with app.app_context():
        alice = db.session.get_one(User, users["alice"])
        Mailbox(alice).send(db.session.get_one(User, bob), "hi bob")
        Mailbox(db.session.get_one(User, bob)).send(alice, "hi alice")
        db.session.add(
            Task(id="t-bob", name="export_posts", description="Exporting your posts",
                 user_id=bob, status=TaskStatus.DONE, result_file="bobs.json")
        )  # fmt: skip
        ApiToken.issue(db.session.get_one(User, bob))
        db.session.commit()

    confirm = as_admin.get(f"/admin/users/{bob}/delete")
    assert confirm.status_code == 200
    assert "Delete bob?" in confirm.get_data(as_text=True)
    assert "3 posts" in confirm.get_data(as_text=True)
    assert user_row(app, "bob") is not None  # asking deletes nothing

    response = as_admin.submit(f"/admin/users/{bob}/delete")
    assert response.status_code == 302
    assert user_row(app, "bob") is None
    with app.app_context():
        for model, column in [
            (Post, Post.user_id),
            (Task, Task.user_id),
            (ApiToken, ApiToken.user_id),
            (Notification, Notification.user_id),
            (Message, Message.sender_id),
            (Message, Message.recipient_id),
        ]:
            assert db.session.scalar(sa.select(sa.func.count()).where(column == bob)) == 0, model
        related = sa.or_(followers.c.follower_id == bob, followers.c.followed_id == bob)
        assert db.session.scalar(sa.select(sa.func.count()).where(related)) == 0
        # The search index followed the posts out.
        assert db.session.execute(sa.text("SELECT count(*) FROM post_fts")).scalar_one() == 0
    assert not export.exists()
    # The name is free again.
    response = as_admin.submit(
        "/admin/users/new",
        {"username": "bob", "email": "bob@example.com", "password": PASSWORD,
         "password2": PASSWORD},
    )  # fmt: skip
    assert response.status_code == 302


# --- creating accounts ----------------------------------------------------------------------------


def test_admin_creates_accounts_while_registration_is_closed(app, as_admin, client):
    app.config["MICROBLOG_REGISTRATION"] = "closed"
    form = {"username": "dave", "email": "dave@example.com", "password": PASSWORD,
            "password2": PASSWORD, "is_admin": "y"}  # fmt: skip
    response = as_admin.submit("/admin/users/new", form)
    assert response.status_code == 302
    dave = user_row(app, "dave")
    assert dave is not None and dave.is_admin and dave.check_password(PASSWORD)

    refused = as_admin.submit("/admin/users/new", {**form, "password2": "other"})
    assert refused.status_code == 400
    assert "Passwords must match." in refused.get_data(as_text=True)


# --- closed registration --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_closed_registration_says_so_and_creates_nobody(app, client, method):
    app.config["MICROBLOG_REGISTRATION"] = "closed"
    form = {"username": "eve", "email": "eve@example.com", "password": PASSWORD,
            "password2": PASSWORD}  # fmt: skip
    response = client.submit("/register", form) if method == "POST" else client.get("/register")
    assert response.status_code == 403
    assert "Registration is closed" in response.get_data(as_text=True)
    assert user_row(app, "eve") is None
    login_page = client.get("/login").get_data(as_text=True)
    assert 'href="/register"' not in login_page


def test_open_registration_links_to_the_form(client):
    assert 'href="/register"' in client.get("/login").get_data(as_text=True)


# --- the jobs dashboard ------------------------------------------------------------------------


def failed_task(app, user_id, task_id="t-failed", name="export_posts", message="Disk full"):
    with app.app_context():
        db.session.add(
            Task(id=task_id, name=name, description="Exporting your posts", user_id=user_id,
                 status=TaskStatus.FAILED, message=message, finished_at=db.func.now())
        )  # fmt: skip
        db.session.commit()


def test_dashboard_shows_queue_consumers_counts_and_failures(app, as_admin, users):
    failed_task(app, users["alice"])
    as_admin.submit("/export_posts")  # root's export: no consumer runs, so it waits
    with app.app_context():
        worker.record_consumer_heartbeat()
    page = as_admin.get("/admin/jobs/status").get_data(as_text=True)
    assert 'data-depth="1"' in page
    assert 'data-alive="yes"' in page and "last heartbeat 0 s ago" in page
    counts = dict(re.findall(r'<tr data-status="(\w+)">.*?class="text-end count">(\d+)<', page))
    assert counts == {"queued": "1", "running": "0", "done": "0", "failed": "1", "cancelled": "0"}
    assert "Disk full" in page and "alice" in page
    assert "/admin/jobs/t-failed/retry" in page


def test_dashboard_lists_each_consumer_and_the_silent_ones(app, as_admin):
    now = utcnow()
    with app.app_context():
        for name, silent in [("web1:10", 2), ("web2:20", 600), ("old:30", 2 * 24 * 3600)]:
            host, pid = name.split(":")
            heartbeat = now - timedelta(seconds=silent)
            db.session.add(Consumer(id=name, hostname=host, pid=int(pid), heartbeat_at=heartbeat))
        db.session.commit()
    page = as_admin.get("/admin/jobs").get_data(as_text=True)
    consumers = re.findall(
        r'data-alive="(\w+)">.*?<code>(.*?)</code>, last heartbeat (\d+) s', page, re.S
    )
    assert [(alive, name) for alive, name, _ in consumers] == [
        ("yes", "web1:10"),
        ("no", "web2:20"),
    ]
    assert [int(seconds) for _, _, seconds in consumers] in ([2, 600], [3, 601])


def test_retry_starts_the_same_task_again_for_its_owner(app, as_admin, users, immediate):
    failed_task(app, users["alice"])
    response = as_admin.submit("/admin/jobs/t-failed/retry", follow_redirects=True)
    assert "started again for alice" in response.get_data(as_text=True)
    with app.app_context():
        again = db.session.scalar(sa.select(Task).where(Task.id != "t-failed"))
        assert (again.user_id, again.name, again.status) == (users["alice"], "export_posts", "done")


def test_a_failed_import_keeps_its_upload_until_it_expires(app, as_admin, users, immediate):
    failed_task(app, users["alice"], name="import_posts")
    upload = tasks_upload(app, "t-failed")
    upload.write_text('{"posts": [{"body": "kept", "timestamp": "2024-05-01T12:00:00Z"}]}')
    with app.app_context():
        assert tasks.delete_expired_uploads.call_local() == 0
        row = db.session.get_one(Task, "t-failed")
        row.finished_at = utcnow() - timedelta(
            days=app.config["MICROBLOG_EXPORT_EXPIRY_DAYS"], seconds=1
        )
        db.session.commit()
        assert tasks.delete_expired_uploads.call_local() == 1
    assert not upload.exists()

    response = as_admin.submit("/admin/jobs/t-failed/retry", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "no longer kept" in page and "alice needs to upload it again" in page
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Task.id))) == 1


def test_only_the_latest_failed_import_of_each_user_keeps_its_upload(app, users):
    # An upload may be 2 GiB: failing imports again and again must not fill the disk.
    uploads = {}
    for task_id, user, hours_ago in [
        ("t-old", "alice", 2),
        ("t-new", "alice", 1),
        ("t-bob", "bob", 3),
    ]:
        failed_task(app, users[user], task_id, name="import_posts")
        with app.app_context():
            db.session.get_one(Task, task_id).finished_at = utcnow() - timedelta(hours=hours_ago)
            db.session.commit()
        uploads[task_id] = tasks_upload(app, task_id)
        uploads[task_id].write_bytes(b"{}")
    with app.app_context():
        assert tasks.delete_expired_uploads.call_local() == 1
    assert {name for name, path in uploads.items() if path.exists()} == {"t-new", "t-bob"}


def test_a_retry_refused_leaves_the_upload_with_the_failed_import(app, as_admin, users):
    failed_task(app, users["alice"], name="import_posts")
    upload = tasks_upload(app, "t-failed")
    upload.write_bytes(b"{}")
    with app.app_context():
        db.session.add(
            Task(id="t-queued", name="import_posts", description="Importing posts",
                 user_id=users["alice"], status=TaskStatus.QUEUED)
        )  # fmt: skip
        db.session.commit()
    response = as_admin.submit("/admin/jobs/t-failed/retry", follow_redirects=True)
    assert "alice already has this task in progress" in response.get_data(as_text=True)
    assert upload.read_bytes() == b"{}"
    assert [path.name for path in upload.parent.iterdir()] == ["t-failed"]


def test_uploads_no_task_needs_are_deleted(app, users):
    orphan, fresh = tasks_upload(app, "no-such-task"), tasks_upload(app, "being-stored")
    orphan.write_bytes(b"{}")
    fresh.write_bytes(b"{}")
    an_hour_ago = time.time() - 3601
    os.utime(orphan, (an_hour_ago, an_hour_ago))
    with app.app_context():
        assert tasks.delete_expired_uploads.call_local() == 1
    # A file younger than an hour may be an upload whose task row is not written yet.
    assert not orphan.exists() and fresh.exists()


def tasks_upload(app, task_id):
    with app.app_context():
        return upload_path(task_id)


def test_only_failed_tasks_of_a_known_kind_are_retried(app, as_admin, users):
    failed_task(app, users["alice"], name="something_else")
    response = as_admin.submit("/admin/jobs/t-failed/retry", follow_redirects=True)
    assert "Only a failed task" in response.get_data(as_text=True)
    assert as_admin.submit("/admin/jobs/nope/retry").status_code == 404
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Task.id))) == 1


def test_a_disabled_accounts_open_pages_get_no_more_notifications(app, client, auth, users):
    auth.login("bob")
    with app.app_context():
        bob = db.session.get_one(User, users["bob"])
        notify(bob.id, "unread_message_count", 3)
        db.session.commit()
    assert [n["data"] for n in client.get("/notifications").get_json()] == [3]
    with app.app_context():
        administration.disable(db.session.get_one(User, users["bob"]))
        db.session.commit()
    # Disabling ended the session itself: the poll is sent to sign in, with no data.
    response = client.get("/notifications")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
