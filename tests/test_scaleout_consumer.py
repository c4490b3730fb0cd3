"""The scale-out setup end to end: gunicorn and two real huey_consumer processes on Redis +
PostgreSQL (runs when both REDIS_URL and TEST_DATABASE_URL are set).

Several users' exports all finish; a consumer killed mid-export has its task resumed by the
other, and every post is in the file exactly once.
"""

import json
import os
import signal

import pytest

from tests.helpers import AWKWARD_BODY, add_posts, add_user, export_document
from tests.live import LiveSite
from tests.test_export_consumer import FAST_BEATS, start_export, under_way

pytestmark = pytest.mark.consumer
# Read at import, as in the other consumer tests: fixtures may remove it from the environment.
REDIS_URL = os.environ.get("REDIS_URL")


@pytest.fixture
def pg_live(pg_app, postgres_url, tmp_path):
    """Make a site (tests/live.py) on Redis and the `pg_app` fixture's PostgreSQL database;
    its processes are stopped before the database goes."""
    if not REDIS_URL:
        pytest.skip("REDIS_URL is not set: the Redis + PostgreSQL tests need both")
    sites = []

    def make(**env):
        site = LiveSite(tmp_path, redis_url=REDIS_URL, DATABASE_URL=postgres_url, **env)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.stop()


def user_ids(app) -> dict[str, int]:
    from database import db
    from models import User

    with app.app_context():
        return {user.username: user.id for user in db.session.scalars(db.select(User))}


def test_exports_of_several_users_all_finish_on_two_consumers(pg_app, pg_live, password_hash):
    for name in ("carol", "dave"):
        add_user(pg_app, name, password_hash)
    users = user_ids(pg_app)
    for number, user_id in enumerate(users.values()):
        add_posts(pg_app, user_id, 300 + number, body=AWKWARD_BODY)
    site = pg_live(MICROBLOG_EXPORT_BATCH_SIZE=50)
    site.start_web()
    site.start_consumer()
    site.start_consumer()

    started = {name: start_export(site, name) for name in users}

    for name, (browser, task_id) in started.items():
        task = site.wait_for_status(task_id, "done", "failed")
        assert task["status"] == "done", task
        status, body, _ = browser.get(f"/exports/{task_id}")
        assert status == 200
        assert json.loads(body) == export_document(pg_app, users[name])


def test_a_killed_consumers_export_resumes_on_the_other(pg_app, pg_live):
    alice = user_ids(pg_app)["alice"]
    add_posts(pg_app, alice, 600, body=AWKWARD_BODY)
    site = pg_live(MICROBLOG_EXPORT_BATCH_SIZE=20, **FAST_BEATS)
    site.start_web()
    victim = site.start_consumer(pause_per_batch=0.1)  # ~3 s for 30 batches
    browser, task_id = start_export(site)
    under_way(site, task_id, 20)
    survivor = site.start_consumer()

    site.stop_consumer(victim, signal.SIGKILL)
    task = site.wait_for_status(task_id, "done", "failed")

    assert (task["status"], task["crashes"]) == ("done", 1), task
    assert task["consumer_id"].split(":")[1] == str(survivor.pid)
    assert "resuming after" in site.consumer_log()
    document = json.loads(browser.get(f"/exports/{task_id}")[1])
    assert document == export_document(pg_app, alice)  # every post, once, in order
    assert not list((site.data_dir / "exports").glob("*.part"))
