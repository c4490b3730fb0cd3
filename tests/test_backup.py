"""`flask backup` and `flask restore` as real processes, a backup taken while another thread
posts, a restore that a fresh site then serves, and the worker's daily backup."""

import sqlite3
import threading
from contextlib import closing

import pytest
import sqlalchemy as sa

import tasks
from database import db
from jobs import Task, TaskStatus
from models import Post, User
from tests.conftest import PASSWORD
from tests.helpers import add_posts
from tests.live import Browser, LiveSite


@pytest.fixture(autouse=True)
def stamped(app):
    """The test database, built by `create_all`, marked as migrated to the newest revision,
    as every installed site's is (`./run.sh` migrates on start)."""
    from flask_migrate import stamp

    from schema_migrations import init_migrations

    init_migrations(app)  # as `flask db` does
    with app.app_context():
        stamp()


def inspect(path):
    """(integrity_check's rows, post count, journal mode) of a database file, read by sqlite3."""
    with closing(sqlite3.connect(path)) as conn:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        posts = conn.execute("SELECT count(*) FROM post").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        # The search index must match the posts of the same moment (FTS5's own check).
        conn.execute("INSERT INTO post_fts(post_fts) VALUES ('integrity-check')")
    return integrity, posts, mode


class Poster(threading.Thread):
    """Publishes posts, one transaction each, until stopped (as a busy site would)."""

    def __init__(self, app, user_id):
        super().__init__(daemon=True)
        self.app, self.user_id = app, user_id
        self.stop = threading.Event()
        self.count = 0

    def run(self):
        with self.app.app_context():
            user = db.session.get_one(User, self.user_id)
            while not self.stop.is_set():
                user.publish(f"written during the backup {self.count}")
                db.session.commit()
                self.count += 1


def test_backup_while_another_thread_posts(app, users, flask_cli, tmp_path):
    add_posts(app, users["alice"], 50_000)
    poster = Poster(app, users["bob"])
    poster.start()
    try:
        while poster.count < 20:  # it is writing before the backup starts
            threading.Event().wait(0.01)
        result = flask_cli("backup", str(tmp_path / "copy.db"))
        during = poster.count
    finally:
        poster.stop.set()
        poster.join()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Backed up {tmp_path / 'app.db'} to {tmp_path / 'copy.db'}")
    assert during > 20 and poster.count > during  # it kept writing throughout

    integrity, posts, mode = inspect(tmp_path / "copy.db")
    assert integrity == ["ok"]
    assert mode == "delete"  # one self-contained file, no -wal beside it
    assert not (tmp_path / "copy.db-wal").exists()
    assert 50_000 + 20 <= posts <= 50_000 + poster.count
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 50_000 + poster.count


def test_backup_defaults_to_the_backups_dir_and_never_overwrites(app, users, flask_cli, tmp_path):
    result = flask_cli("backup")
    assert result.returncode == 0, result.stderr
    [made] = (tmp_path / "backups").glob("app-*.db")
    assert inspect(made)[0] == ["ok"]
    assert oct(made.stat().st_mode & 0o777) == "0o600"

    result = flask_cli("backup", str(made))
    assert result.returncode == 1
    assert "already exists" in result.stderr


def test_restore_into_a_fresh_data_dir_that_the_app_then_serves(app, users, flask_cli, tmp_path):
    add_posts(app, users["alice"], ["a post that must come back"])
    with app.app_context():
        db.session.add(
            Task(id="t-queued", name="export_posts", description="Exporting your posts",
                 user_id=users["alice"], status=TaskStatus.QUEUED)
        )  # fmt: skip
        db.session.commit()
    backup_file = tmp_path / "blog.db"
    assert flask_cli("backup", str(backup_file)).returncode == 0

    fresh = tmp_path / "fresh"
    result = flask_cli("restore", str(backup_file), data_dir=fresh)
    assert result.returncode == 0, result.stderr
    assert "3 users, 1 posts" in result.stdout
    assert "1 unfinished tasks marked failed" in result.stdout

    site = LiveSite(fresh)
    try:
        browser = Browser(site.start_web())
        browser.login("alice", PASSWORD)
        _status, page, _ = browser.get("/user/alice")
        assert b"a post that must come back" in page
        _status, page, _ = browser.get("/tasks")
        assert b"Stopped by a restore of the database" in page
        # The search index came back with the posts.
        _status, page, _ = browser.get("/search?q=must")
        assert b"come back" in page
    finally:
        site.stop()
    assert inspect(backup_file)[0] == ["ok"]  # the backup itself was left as it was


def test_restore_refuses_while_the_site_runs(app, users, flask_cli, live, tmp_path):
    backup_file = tmp_path / "blog.db"
    assert flask_cli("backup", str(backup_file)).returncode == 0
    add_posts(app, users["alice"], ["written after the backup"])
    site = live()
    browser = Browser(site.start_web())
    browser.login("alice", PASSWORD)  # the web process now holds its connections

    result = flask_cli("restore", str(backup_file))
    assert result.returncode == 1
    assert "is in use: stop the web server and the worker first" in result.stderr
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 1

    site.stop()
    with app.app_context():
        db.engine.dispose()  # this test process is a user of the database too
    result = flask_cli("restore", str(backup_file))
    assert result.returncode == 0, result.stderr
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 0


def damaged_copy(source, target):
    """`source` with a whole page in the middle, header included, overwritten by garbage
    (garbage only in a page's unused space, as an empty index has, is no damage)."""
    data = bytearray(source.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = b"\xff" * page
    target.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["not sqlite", "empty sqlite", "damaged", "missing"])
def test_restore_refuses_a_bad_file_and_changes_nothing(app, users, flask_cli, tmp_path, kind):
    add_posts(app, users["alice"], 2000)
    bad = tmp_path / "bad.db"
    if kind == "not sqlite":
        bad.write_text("this is not a database\n" * 100)
        message = "is not a SQLite database, or is damaged (file is not a database)"
    elif kind == "empty sqlite":
        sqlite3.connect(bad).execute("CREATE TABLE t (x)").connection.close()
        message = "is a SQLite database, but not Microblog's"
    elif kind == "damaged":
        assert flask_cli("backup", str(tmp_path / "good.db")).returncode == 0
        damaged_copy(tmp_path / "good.db", bad)
        message = "damaged"
    else:
        message = "There is no file at"
    before = (tmp_path / "app.db").read_bytes()
    result = flask_cli("restore", str(bad))
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert (tmp_path / "app.db").read_bytes() == before


def test_the_worker_keeps_the_newest_daily_backups(app, users, tmp_path):
    app.config["MICROBLOG_BACKUP_KEEP"] = 2
    backups = tmp_path / "backups"
    backups.mkdir()
    for name in ("daily-20240101T033000Z.db", "daily-20240102T033000Z.db", "app-20230101.db"):
        (backups / name).write_text("an older backup")
    with app.app_context():
        made = tasks.daily_backup.call_local()
    assert made.startswith(str(backups / "daily-"))
    assert sorted(path.name for path in backups.iterdir()) == sorted(
        ["app-20230101.db", "daily-20240102T033000Z.db", made.rsplit("/", 1)[1]]
    )
    assert inspect(made)[0] == ["ok"]

    app.config["MICROBLOG_BACKUP_KEEP"] = 0  # turned off
    with app.app_context():
        assert tasks.daily_backup.call_local() == ""


@pytest.mark.parametrize("command", [["backup"], ["restore", "some.db"]])
def test_postgres_gets_pointed_to_its_own_tools(flask_cli, command):
    result = flask_cli(*command, DATABASE_URL="postgresql://nobody@127.0.0.1:1/microblog")
    assert result.returncode == 1
    assert "pg_dump" in result.stderr and "pg_restore" in result.stderr
