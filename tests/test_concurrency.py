"""SQLite under concurrent writers never tells a user "database is locked"."""

import subprocess
import sys
import threading
from pathlib import Path

import sqlalchemy as sa

from database import db
from models import Post
from tests.conftest import PASSWORD

PROJECT = Path(__file__).resolve().parent.parent

# Another process hammering the same database, as the Huey consumer does.
OTHER_PROCESS = """
import sys, sqlalchemy as sa
sys.path.insert(0, {project!r})
from microblog import create_app
from database import db
from notifications import Notification
app = create_app({{"DATA_DIR": {data_dir!r}}})
with app.app_context():
    for n in range(200):
        db.session.add(Notification(name="load", user_id=1, payload_json=str(n)))
        db.session.commit()
print("ok")
"""


def test_concurrent_posts_from_threads_and_another_process(app, users, tmp_path):
    statuses = []

    def write_posts(username):
        client = app.test_client()
        client.submit("/login", {"username": username, "password": PASSWORD})
        for n in range(15):
            statuses.append(client.submit("/index", {"post": f"{username} {n}"}).status_code)

    other = subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS.format(project=str(PROJECT), data_dir=str(tmp_path))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Two logged-in clients per user, all posting at once.
    threads = [threading.Thread(target=write_posts, args=(name,)) for name in users for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out, err = other.communicate(timeout=120)

    assert out.strip() == "ok", err
    assert statuses == [302] * 90
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Post.id))) == 90
