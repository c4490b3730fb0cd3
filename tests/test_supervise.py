"""`./run.sh` started as a user would, on its own data dir and port: a killed worker or web
server (each forked again by supervise.py, the one process run.sh starts) is started again
while the other keeps serving, and the export that was running when the worker died
finishes by itself, every post exactly once."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from flask_migrate import upgrade

from database import db
from microblog import create_app
from schema_migrations import init_migrations
from tests.conftest import PASSWORD
from tests.helpers import AWKWARD_BODY, add_posts, add_user, export_document
from tests.live import (
    PROJECT_DIR,
    Browser,
    child_named,
    children,
    free_port,
    server_env,
    wait_for,
)

pytestmark = pytest.mark.consumer
POSTS = 1500
SLOW_EXPORTS = Path(__file__).resolve().parent / "slow_exports"


class Prober(threading.Thread):
    """GETs /login every half second and records every failure, until stopped."""

    def __init__(self, url):
        super().__init__(daemon=True)
        self.url, self.stop, self.count, self.failures = url, threading.Event(), 0, []

    def run(self):
        while not self.stop.wait(0.5):
            self.count += 1
            try:
                with urllib.request.urlopen(self.url + "/login", timeout=5) as response:
                    if response.status != 200:
                        self.failures.append(response.status)
            except Exception as exc:
                self.failures.append(repr(exc))


@pytest.fixture
def site(tmp_path, password_hash):
    """A migrated data dir with alice and her posts, served by ./run.sh (slowed exports)."""
    app = create_app({"DATA_DIR": str(tmp_path)})
    init_migrations(app)  # as `flask db` does
    with app.app_context():
        upgrade(directory=str(PROJECT_DIR / "migrations"))
    alice = add_user(app, "alice", password_hash)
    add_posts(app, alice, POSTS, body=AWKWARD_BODY)
    with app.app_context():
        db.engine.dispose()
    port = free_port()
    env = server_env(
        tmp_path,
        HOST="127.0.0.1",
        PORT=port,
        VENV=Path(sys.executable).parent.parent,
        HUEY_NAME=f"supervised{port}",
        MICROBLOG_EXPORT_BATCH_SIZE=20,
        EXPORT_BATCH_PAUSE=0.05,
        PYTHONPATH=SLOW_EXPORTS,
    )
    log = open(tmp_path / "run.log", "ab")
    process = subprocess.Popen(
        [PROJECT_DIR / "run.sh"], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    process.url, process.app, process.alice = f"http://127.0.0.1:{port}", app, alice
    process.log = lambda: (tmp_path / "run.log").read_text(errors="replace")
    try:
        wait_for(lambda: Browser(process.url).get("/login")[0] == 200 if _up(process) else None,
                 timeout=60, interval=0.2, what="./run.sh to serve")  # fmt: skip
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _up(process) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"./run.sh exited with {process.returncode}:\n{process.log()}")
    try:
        urllib.request.urlopen(process.url + "/login", timeout=2).close()
        return True
    except OSError:
        return False


def task_row(app, task_id=None):
    with app.app_context():
        from jobs import Task

        query = db.select(Task).order_by(Task.created_at.desc())
        row = db.session.scalars(query.where(Task.id == task_id) if task_id else query).first()
        db.session.expunge_all()
        return row


def test_a_killed_worker_is_restarted_and_its_export_resumes(site, tmp_path):
    browser = Browser(site.url)
    browser.login("alice", PASSWORD)
    assert browser.submit("/export_posts")[0] == 200
    task_id = task_row(site.app).id
    wait_for(lambda: task_row(site.app, task_id).progress >= 20, what="the export under way")
    consumer = child_named(site.pid, "huey_consumer")
    assert consumer is not None, children(site.pid)
    web = child_named(site.pid, "gunicorn")
    prober = Prober(site.url)
    prober.start()

    os.kill(consumer, signal.SIGKILL)

    restarted = wait_for(
        lambda: (pid := child_named(site.pid, "huey_consumer")) != consumer and pid,
        timeout=10, what="a new consumer",
    )  # fmt: skip
    row = wait_for(
        lambda: (row := task_row(site.app, task_id)).status in ("done", "failed") and row,
        timeout=60, interval=0.1, what="the export to end",
    )  # fmt: skip
    prober.stop.set()
    prober.join()
    assert (row.status, row.crashes) == ("done", 1), (row.status, row.message, site.log()[-3000:])
    assert prober.count >= 2 and prober.failures == []
    assert child_named(site.pid, "gunicorn") == web  # the web server never stopped
    log = site.log()
    assert f"worker (pid {consumer}) exited with status 137" in log
    assert f"worker started (pid {restarted})" in log
    assert "resuming after" in log  # from the checkpoint, not from the start
    status, body, _ = browser.get(f"/exports/{task_id}")
    assert status == 200
    assert json.loads(body) == export_document(site.app, site.alice)

    # SIGTERM (as systemd, or Ctrl-C) still stops both, cleanly.
    os.kill(site.pid, signal.SIGTERM)
    assert site.wait(timeout=60) == 0
    assert children(site.pid) == {}
    assert "Shutting down: Master" in site.log() and "Consumer exiting" in site.log()


def test_a_killed_web_server_is_restarted_and_the_worker_keeps_running(site):
    consumer = child_named(site.pid, "huey_consumer")
    web = child_named(site.pid, "gunicorn")

    os.kill(web, signal.SIGKILL)

    wait_for(lambda: (pid := child_named(site.pid, "gunicorn")) not in (None, web) and pid,
             timeout=10, what="a new web server")  # fmt: skip
    wait_for(lambda: _up(site), timeout=30, interval=0.2, what="the site to answer again")
    assert child_named(site.pid, "huey_consumer") == consumer
    assert f"web (pid {web}) exited with status 137" in site.log()
    # It keeps dying young: the next restart waits longer.
    web = child_named(site.pid, "gunicorn")
    os.kill(web, signal.SIGKILL)
    wait_for(lambda: "starting it again in 2 s" in site.log(), timeout=10, what="the back-off")
    wait_for(lambda: _up(site), timeout=30, interval=0.2, what="the site to answer again")
    time.sleep(0.1)
    assert child_named(site.pid, "huey_consumer") == consumer
