"""Export your posts end to end: gunicorn + a real huey_consumer subprocess + a real SMTP server.

Also the faults: a consumer stopped with SIGINT mid-export, one killed with SIGKILL, and an
SMTP server that is down.
"""

import functools
import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

import jobs
import worker
from tests.conftest import PASSWORD
from tests.helpers import AWKWARD_BODY, add_posts, export_document
from tests.live import Browser, wait_for

pytestmark = pytest.mark.consumer
# Read at import: the `app` fixture removes REDIS_URL from the environment during each test.
REDIS_URL = os.environ.get("REDIS_URL")


def start_export(site, username="alice"):
    browser = Browser(site.url)
    browser.login(username, PASSWORD)
    status, body = browser.submit("/export_posts")
    assert status == 200, body[:300]
    task = site.task()
    assert task is not None and task["status"] in ("queued", "running", "done")
    return browser, task["id"]


def site_with_mail(live, smtp_port, redis_url=None, **env):
    """gunicorn and a consumer that mail through the SMTP server on `smtp_port`."""
    site = live(redis_url, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_port, **env)
    site.start_web()
    site.start_consumer()
    return site


def redis_url_or_skip(backend):
    if backend == "sqlite":
        return None
    if not REDIS_URL:
        pytest.skip("REDIS_URL is not set: the Redis variant runs only where Redis is available")
    return REDIS_URL


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_export_with_consumer_and_email(app, users, live, smtp_server, backend):
    add_posts(app, users["alice"], 1234, body=AWKWARD_BODY)
    add_posts(app, users["bob"], 5, body=AWKWARD_BODY)
    site = site_with_mail(
        live, smtp_server.port, redis_url_or_skip(backend), MICROBLOG_EXPORT_BATCH_SIZE=100
    )

    browser, task_id = start_export(site)
    task = site.wait_for_status(task_id, "done", "failed")

    assert task["status"] == "done", task
    assert task["message"] == "Your export is ready. We also emailed it to you."
    expected = export_document(app, users["alice"])
    assert len(expected["posts"]) == 1234
    # The email: subject, both bodies, posts.json attached as application/json.
    (message,) = smtp_server.messages
    assert message["Subject"] == "[Microblog] Your blog posts"
    assert message["To"] == "alice@example.com"
    assert "Dear alice" in message.get_body(("plain",)).get_content()
    assert "<p>Dear alice," in message.get_body(("html",)).get_content()
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "posts.json"
    assert attachment.get_content_type() == "application/json"
    assert json.loads(attachment.get_payload(decode=True)) == expected
    # The download, through the route, for the owner only.
    status, body, headers = browser.get(f"/exports/{task_id}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == expected
    assert len(body) == task["result_size"]
    bob = Browser(site.url)
    assert bob.get(f"/exports/{task_id}")[0] == 404
    bob.login("bob", PASSWORD)
    assert bob.get(f"/exports/{task_id}")[0] == 404
    # The page offers the download.
    status, page, _ = browser.get("/user/alice")
    assert b"Your export is ready" in page and f'href="/exports/{task_id}"'.encode() in page


def test_large_export_is_mailed_as_a_link(app, users, live, smtp_server):
    add_posts(app, users["alice"], 300, body=AWKWARD_BODY)
    # SITE_URL in http: the test browser sends no Secure cookie.
    site = site_with_mail(
        live,
        smtp_server.port,
        MICROBLOG_EXPORT_ATTACH_MAX_BYTES=1000,
        SITE_URL="http://microblog.example.org",
    )

    _browser, task_id = start_export(site)

    assert site.wait_for_status(task_id, "done", "failed")["status"] == "done"
    (message,) = smtp_server.messages
    assert list(message.iter_attachments()) == []
    # The link is the configured public URL, not the address the request came in on.
    text = message.get_body(("plain",)).get_content()
    assert f"http://microblog.example.org/exports/{task_id}" in text
    assert site.url not in text


def test_queued_without_worker_then_ready_to_download_without_mail(app, users, live):
    add_posts(app, users["alice"], 10, body=AWKWARD_BODY)
    site = live()
    site.start_web()
    browser, task_id = start_export(site)  # no consumer yet: the task waits
    _, page, _ = browser.get("/index")
    assert site.task(task_id)["status"] == "queued"
    assert b"The background worker is not running" in page

    site.start_consumer()

    task = site.wait_for_status(task_id, "done", "failed")
    _, page, _ = browser.get("/index")
    assert b"The background worker is not running" not in page
    assert (task["status"], task["message"]) == ("done", "Your export is ready to download.")
    assert json.loads(browser.get(f"/exports/{task_id}")[1]) == export_document(app, users["alice"])


# With a consumer that pauses 0.1 s after each batch (tests/slow_consumer.py): 600 posts take
# 30 batches, about 3 s, so that a test can stop the consumer mid-export.
SLOW_BATCH_SIZE = 20
SLOW_PAUSE = 0.1


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_requeues_a_running_export_which_completes_after_restart(
    app, users, live, stop_signal
):
    site, consumer, browser, task_id = slow_export(app, users, live, fast_beats=False)
    wait_for(lambda: site.task(task_id)["progress"] >= 10, what="the export to be under way")

    site.stop_consumer(consumer, stop_signal)  # SIGINT: graceful; SIGTERM: at once

    task = site.task(task_id)
    assert task["status"] == "queued", task
    assert 10 <= task["progress"] < 100
    assert "interrupted; re-queued" in site.consumer_log()
    _, page, _ = browser.get("/index")
    assert b"Paused while the background worker restarts" in page

    site.start_consumer(pause_per_batch=SLOW_PAUSE)
    task = site.wait_for_status(task_id, "done", "failed")

    assert task["status"] == "done", task
    assert json.loads(browser.get(f"/exports/{task_id}")[1]) == export_document(app, users["alice"])
    assert not list((site.data_dir / "exports").glob("*.part"))


# Consumers beat every 0.3 s, so one silent for 0.9 s is dead.
# A consumer beats every 0.3 s and counts as dead after three silent beats.
FAST_BEATS = {"MICROBLOG_CONSUMER_HEARTBEAT_SECONDS": 0.3, "MICROBLOG_CONSUMER_SILENT_SECONDS": 0.9}


def slow_export(app, users, live, fast_beats=True):
    """alice's 600-post export under way on a consumer that pauses after each batch:
    (site, consumer, her browser, task id)."""
    add_posts(app, users["alice"], 600, body=AWKWARD_BODY)
    site = live(MICROBLOG_EXPORT_BATCH_SIZE=SLOW_BATCH_SIZE, **(FAST_BEATS if fast_beats else {}))
    site.start_web()
    consumer = site.start_consumer(pause_per_batch=SLOW_PAUSE)
    browser, task_id = start_export(site)
    return site, consumer, browser, task_id


def under_way(site, task_id, beyond=0):
    """Wait until the running export has moved past `beyond` percent; returns the row."""
    return wait_for(
        lambda: (
            (row := site.task(task_id))["status"] == "running" and row["progress"] > beyond and row
        ),
        what=f"the export past {beyond}%",
    )


def test_a_frozen_consumer_is_noticed_by_a_live_one_and_the_export_resumes(app, users, live):
    site, frozen, browser, task_id = slow_export(app, users, live, fast_beats=True)
    under_way(site, task_id, 20)

    # SIGSTOP: the process is still there but its heartbeat stops, as on another machine.
    frozen.send_signal(signal.SIGSTOP)
    wait_for(
        lambda: b"waiting for it to restart" in browser.get("/index")[1],
        timeout=10,
        what="the banner to say that the worker is gone",
    )
    _, page, _ = browser.get("/index")
    assert b"task-percent" not in page  # no frozen percentage
    site.start_consumer(pause_per_batch=SLOW_PAUSE)
    task = site.wait_for_status(task_id, "done", "failed")
    site.stop_consumer(frozen, signal.SIGKILL)

    assert (task["status"], task["crashes"]) == ("done", 1), task
    assert "resuming after" in site.consumer_log()
    assert json.loads(browser.get(f"/exports/{task_id}")[1]) == export_document(app, users["alice"])
    assert not list((site.data_dir / "exports").glob("*.part"))


def test_three_crashes_and_the_task_fails_saying_so(app, users, live):
    site, consumer, browser, task_id = slow_export(app, users, live, fast_beats=True)
    progress = 0
    for crash in (1, 2, 3):
        progress = under_way(site, task_id, progress)["progress"]
        site.stop_consumer(consumer, signal.SIGKILL)
        consumer = site.start_consumer(pause_per_batch=SLOW_PAUSE)
        if crash < 3:
            seen = functools.partial(lambda n: site.task(task_id)["crashes"] == n, crash)
            wait_for(seen, what=f"crash {crash} seen")

    task = site.wait_for_status(task_id, "failed", "done")

    assert (task["status"], task["crashes"]) == ("failed", 3), task
    assert task["message"] == jobs.TASK_TEXT_TOO_MANY_CRASHES
    assert jobs.TASK_TEXT_TOO_MANY_CRASHES.encode() in browser.get("/tasks")[1]
    assert not list((site.data_dir / "exports").glob("*"))
    # The user can export again, and this time it completes.
    status, _ = browser.submit("/export_posts")
    new_task = site.task()
    assert status == 200 and new_task["id"] != task_id
    assert site.wait_for_status(new_task["id"], "done", "failed")["status"] == "done"


def test_cancel_while_waiting_for_the_worker_to_restart(app, users, live):
    site, consumer, browser, task_id = slow_export(app, users, live, fast_beats=True)
    under_way(site, task_id, 10)
    site.stop_consumer(consumer, signal.SIGKILL)

    status, page = browser.submit(f"/tasks/{task_id}/cancel", token_from="/index")
    assert status == 200 and "Cancelling…" in page.decode()  # the banner, once
    site.start_consumer()
    task = site.wait_for_status(task_id, "cancelled", "done", "failed", timeout=10)

    assert task["status"] == "cancelled"
    assert b"Cancelled." in browser.get("/tasks")[1]
    # The consumer that finds the task removes its partial file just after recording it.
    exports = site.data_dir / "exports"
    wait_for(lambda: not list(exports.glob("*")), what="the partial export removed")


class RefusingSmtpServer:
    """Accepts TCP connections and hangs up at once, counting the attempts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.attempts = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.attempts += 1
            conn.close()

    def close(self):
        self.sock.close()


def test_smtp_down_retries_then_ends_done_with_a_message(app, users, live):
    add_posts(app, users["alice"], 10, body=AWKWARD_BODY)
    smtp = RefusingSmtpServer()
    try:
        site = site_with_mail(
            live, smtp.port, MICROBLOG_MAIL_RETRIES=2, MICROBLOG_MAIL_RETRY_DELAY=1
        )
        browser, task_id = start_export(site)

        task = site.wait_for_status(task_id, "done", "failed")

        assert smtp.attempts == 3  # the first try and two retries
    finally:
        smtp.close()
    assert task["status"] == "done"
    assert "the email could not be sent" in task["text"]
    assert "ready to download" in task["text"]
    assert json.loads(browser.get(f"/exports/{task_id}")[1]) == export_document(app, users["alice"])
    assert site.consumer_log().count("Requeueing") == 2


def niceness(pid, thread_id) -> int:
    fields = (Path(f"/proc/{pid}/task/{thread_id}/stat").read_text().rsplit(")", 1)[1]).split()
    return int(fields[16])  # the 19th field of stat; the two before the split are pid, comm


def test_the_consumer_yields_the_cpu_to_the_web(app, users, live):
    """Every thread of the consumer (its workers run the exports) has a lower priority than
    the web server's, so pages stay quick while exports run."""
    site = live()
    site.start_web()
    consumer = site.start_consumer()

    task_dir = Path(f"/proc/{consumer.pid}/task")
    wait_for(
        lambda: len(list(task_dir.iterdir())) >= 4,
        what="the main thread, the scheduler and two workers",
    )
    threads = [path.name for path in task_dir.iterdir()]

    ours = os.getpriority(os.PRIO_PROCESS, 0)  # the test run's, which the servers inherit
    assert niceness(site.web.pid, site.web.pid) == ours
    expected = max(ours, worker.CONSUMER_NICENESS)
    assert {niceness(consumer.pid, thread) for thread in threads} == {expected}
