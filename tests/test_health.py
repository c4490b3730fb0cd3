"""/healthz and /readyz: in the test client for each missing part, and against gunicorn with a
real consumer that starts and stops."""

import json
import signal
from datetime import timedelta

import pytest
import sqlalchemy as sa
from huey.storage import RedisStorage

import tasks
import worker
from database import db, utcnow
from federation_in import InboxActivity
from microblog import create_app
from tests.live import Browser, free_port, wait_for


def test_healthz_answers_without_asking_anything_else(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_without_any_worker(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "missing": ["worker"],
        "checks": {
            "database": "ok",
            "deliveries": "ok",
            "inbox": "ok",
            "queue": "ok",
            "worker": "no worker is running",
        },
    }


def test_readyz_with_a_recent_heartbeat(app, client):
    with app.app_context():
        worker.record_consumer_heartbeat()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["missing"] == []


def test_readyz_names_an_inbox_whose_activities_wait(app, client):
    with app.app_context():
        worker.record_consumer_heartbeat()
        now = utcnow()
        for number, age in enumerate((timedelta(minutes=5), timedelta(minutes=61))):
            db.session.add(
                InboxActivity(
                    activity_id=f"https://far.example/activities/{number}",
                    actor_url="https://far.example/users/someone",
                    body="{}",
                    received_at=now - age,
                )
            )
        db.session.commit()
    body = client.get("/readyz").get_json()
    assert body["missing"] == ["inbox"]
    assert body["checks"]["inbox"] == "2 received activities wait, the oldest for 61 min"
    with app.app_context():  # applied (or given up): nothing waits
        db.session.execute(sa.update(InboxActivity).values(state="applied"))
        db.session.commit()
    assert client.get("/readyz").get_json()["missing"] == []


def test_readyz_names_a_database_that_does_not_answer(tmp_path):
    # A database file in a directory that does not exist: SQLite cannot open it.
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'app.db'}"
    app = create_app({"DATA_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": url})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    # The workers' heartbeats and the deliveries live in the database too: nobody can vouch
    # for them.
    assert body["missing"] == ["database", "worker", "deliveries", "inbox"]
    assert body["checks"]["worker"] == "unknown: the database is down"
    assert body["checks"]["deliveries"] == "unknown: the database is down"
    assert body["checks"]["inbox"] == "unknown: the database is down"
    assert body["checks"]["database"] == "the database does not answer"


def test_readyz_names_a_queue_that_does_not_answer(client, monkeypatch):
    # Redis on a port where nothing listens.
    dead = RedisStorage("microblog", url=f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(tasks.huey, "storage", dead)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["missing"] == ["queue", "worker"]
    assert body["checks"]["queue"] == "the task queue does not answer"


def get_json(browser, path):
    status, body, _headers = browser.get(path)
    return status, json.loads(body)


@pytest.mark.consumer
def test_readyz_follows_a_real_worker(live):
    site = live(MICROBLOG_CONSUMER_HEARTBEAT_SECONDS=0.2, MICROBLOG_CONSUMER_SILENT_SECONDS=2)
    browser = Browser(site.start_web())
    assert get_json(browser, "/healthz") == (200, {"status": "ok"})
    status, body = get_json(browser, "/readyz")
    assert (status, body["checks"]["worker"]) == (503, "no worker is running")

    consumer = site.start_consumer()
    status, body = wait_for(
        lambda: (result := get_json(browser, "/readyz"))[0] == 200 and result,
        timeout=20,
        what="/readyz to see the worker",
    )
    assert body == {
        "status": "ok",
        "missing": [],
        "checks": {
            "database": "ok",
            "deliveries": "ok",
            "inbox": "ok",
            "queue": "ok",
            "worker": "ok",
        },
    }

    site.stop_consumer(consumer, signal.SIGINT)
    status, body = wait_for(
        lambda: (result := get_json(browser, "/readyz"))[0] == 503 and result,
        timeout=20,
        what="/readyz to miss the worker",
    )
    assert body["missing"] == ["worker"]
    # A consumer that stops cleanly says so (it removes its heartbeat on the way out).
    assert body["checks"]["worker"] == "no worker is running"
    assert get_json(browser, "/healthz")[0] == 200
