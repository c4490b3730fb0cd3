"""Deliveries to other servers, end to end: a real huey_consumer sending to small inbox
servers on loopback (tests/receivers.py) that answer as each test needs.

The schedule's durations (two days of retries, a week before dropping) are settings: the
tests shrink them to fractions of a second rather than wait."""

import asyncio
import base64
import concurrent.futures
import hashlib
import os
import signal
import time

import httpsig
import httpx
import pytest
import sqlalchemy as sa

import actors
import deliveries
import tasks
import worker
from database import db
from delivery_sender import Limits, make_client
from delivery_store import Delivery, FederationHost
from tests.live import wait_for
from tests.receivers import HANG, Receiver

pytestmark = pytest.mark.consumer
REDIS_URL = os.environ.get("REDIS_URL")

# Short enough for a test, in the same proportions as the defaults.
FAST = {
    "FEDERATION_RETRY_BASE_SECONDS": 0.3,
    "FEDERATION_RETRY_MAX_SECONDS": 1.0,
    "FEDERATION_PAUSE_SECONDS": 0.5,
    "FEDERATION_BREAKER_FAILURES": 2,
    "FEDERATION_REQUEST_TIMEOUT": 1.0,
    "FEDERATION_CONNECT_TIMEOUT": 0.5,
    "MICROBLOG_PERIODIC_SECONDS": 0.2,
}


@pytest.fixture
def app_config():
    return dict(FAST)


@pytest.fixture
def receivers():
    made = []

    def make(script=None):
        receiver = Receiver(script)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.stop()


def start_site(live, monkeypatch, redis_url=None, consumers=1, **env):
    """A consumer on the test's data dir; this process's `deliver()` queues on its queue."""
    site = live(redis_url, FEDERATION_ALLOW_HTTP="true", FEDERATION_ALLOW_PRIVATE="true",
                **{**FAST, **env})  # fmt: skip
    monkeypatch.setattr(tasks.huey, "name", site.huey_name)
    if redis_url:
        monkeypatch.setattr(tasks.huey, "storage_class", worker.RedisStorage)
        monkeypatch.setattr(tasks.huey, "storage_kwargs", {"url": redis_url})
    monkeypatch.setattr(tasks.huey, "storage", tasks.huey.create_storage())
    for _ in range(consumers):
        site.start_consumer()
    return site


def note(number):
    return {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"https://example.test/activities/{number}",
        "type": "Create",
        "object": {"type": "Note", "content": f"note {number}"},
    }


def deliver(app, activity, inboxes, signer_id=None):
    with app.app_context():
        deliveries.deliver(activity, signer_id=signer_id, inboxes=inboxes)


def host_row(app, receiver):
    with app.app_context():
        row = db.session.get(FederationHost, receiver.host)
        return None if row is None else {c: getattr(row, c) for c in row.__table__.columns.keys()}


def pending(app, receiver=None):
    with app.app_context():
        query = sa.select(sa.func.count(Delivery.id))
        if receiver is not None:
            query = query.where(Delivery.host == receiver.host)
        return db.session.scalar(query)


def test_fan_out_reaches_each_inbox_once_signed(app, users, live, monkeypatch, receivers):
    inboxes = [receivers() for _ in range(40)]
    start_site(live, monkeypatch)
    # Two followers on the same server share its inbox: one request per inbox.
    alice = users["alice"]
    deliver(app, note(1), [r.inbox for r in inboxes] + [inboxes[0].inbox], signer_id=alice)
    wait_for(lambda: all(r.activities for r in inboxes), timeout=30, what="every inbox")
    wait_for(lambda: pending(app) == 0, what="no delivery left")
    assert all(r.activities == {note(1)["id"]: 1} for r in inboxes)
    assert host_row(app, inboxes[0])["delivered"] == 1
    # Signed by alice's key, as an implementation nobody here wrote checks it.
    with app.app_context():
        public_pem = actors.local_key(alice).public_pem
        key_id = actors.key_id(alice)
    for receiver in inboxes[:5]:
        headers, body = receiver.headers[0], receiver.bodies[0]
        assert f'keyId="{key_id}"' in headers["Signature"]
        verifier = httpsig.HeaderVerifier(
            headers,
            public_pem,
            required_headers=["(request-target)", "host", "date", "digest"],
            method="POST",
            path="/inbox",
            sign_header="signature",
        )
        assert verifier.verify()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert headers["Digest"] == f"SHA-256={digest}"


def test_sigkill_mid_fan_out_loses_nothing(app, users, live, monkeypatch, receivers):
    # Slow receivers, few at a time: the fan-out takes seconds, and the kill lands inside it.
    slow = lambda n: (time.sleep(0.15), 202)[1]  # noqa: E731
    inboxes = [receivers(slow) for _ in range(120)]
    concurrency = 8
    site = start_site(
        live,
        monkeypatch,
        FEDERATION_DELIVERY_CONCURRENCY=concurrency,
        FEDERATION_DELIVERY_BATCH=20,
    )
    deliver(app, note(2), [r.inbox for r in inboxes])
    wait_for(lambda: sum(bool(r.activities) for r in inboxes) >= 20, what="some deliveries")
    site.stop_consumer(site.consumers[0], signal.SIGKILL)
    got_before_restart = sum(r.requests for r in inboxes)
    assert got_before_restart < len(inboxes), "the kill came too late to test anything"
    site.start_consumer()
    wait_for(lambda: all(r.activities for r in inboxes), timeout=60, what="every inbox")
    wait_for(lambda: pending(app) == 0, what="no delivery left")
    duplicates = sum(count - 1 for r in inboxes for count in r.activities.values())
    # At most the requests in flight at the kill are sent again, and those answered in the
    # last moments before it whose outcome was not written yet (written every 50 ms).
    assert duplicates <= 2 * concurrency


def test_servers_that_never_answer_hold_up_no_one(app, users, live, monkeypatch, receivers):
    # More silent servers than slots, in small rounds, with a long request timeout: were a
    # slot or a round's end to wait on them, the others would wait the whole timeout.
    silent = [receivers(lambda n: HANG) for _ in range(6)]
    healthy = [receivers() for _ in range(30)]
    start_site(live, monkeypatch, FEDERATION_DELIVERY_CONCURRENCY=4,
               FEDERATION_DELIVERY_BATCH=5, FEDERATION_REQUEST_TIMEOUT=30)  # fmt: skip
    deliver(app, note(5), [r.inbox for r in silent + healthy])
    wait_for(lambda: all(r.activities for r in healthy), timeout=20, what="every healthy inbox")
    assert all(r.requests == 1 for r in silent)
    wait_for(lambda: pending(app) == len(silent), what="the healthy deliveries recorded")
    # The silent servers' requests are still waiting for an answer: nothing is recorded yet.
    assert all((host_row(app, r) or {}).get("failures", 0) == 0 for r in silent)


def test_retried_refused_and_throttled(app, users, live, monkeypatch, receivers):
    flaky = receivers(lambda n: 500 if n == 1 else 202)
    gone = receivers(lambda n: 410)
    throttled = receivers(lambda n: (429, {"Retry-After": "1"}) if n == 1 else 202)
    start_site(live, monkeypatch)
    deliver(app, note(3), [flaky.inbox, gone.inbox, throttled.inbox])
    wait_for(lambda: pending(app) == 0, timeout=30, what="every delivery settled")
    assert flaky.requests == 2 and flaky.activities[note(3)["id"]] == 1
    assert gone.requests == 1 and not gone.activities
    assert host_row(app, gone)["refused"] == 1
    assert throttled.requests == 2 and throttled.activities[note(3)["id"]] == 1
    waited = throttled.times[1] - throttled.times[0]
    assert waited >= 0.95, f"Retry-After: 1 honoured ({waited:.2f} s)"
    assert host_row(app, flaky)["failures"] == 0


def test_dead_host_paused_probed_and_released(app, users, live, monkeypatch, receivers):
    alive = {"yes": False}
    dead = receivers(lambda n: 202 if alive["yes"] else HANG)
    site = start_site(live, monkeypatch)
    for number in range(5):
        deliver(app, note(10 + number), [dead.inbox])
    wait_for(lambda: (host_row(app, dead) or {}).get("paused_until"), what="the host paused")
    # Paused: one probe at a time, each after its pause (each probe waits out its 1 s
    # timeout), never the five deliveries at once; and no round spins meanwhile.
    rounds_before = site.consumer_log().count("Executing deliveries.send_deliveries")
    time.sleep(3)
    rounds = site.consumer_log().count("Executing deliveries.send_deliveries") - rounds_before
    assert rounds <= 10, f"{rounds} rounds in 3 s while the only host is paused"
    assert host_row(app, dead)["paused_until"] is not None
    probe_times = dead.times[5:]
    assert 1 <= len(probe_times) <= 3, dead.times
    assert all(b - a >= 1.4 for a, b in zip(probe_times, probe_times[1:], strict=False))
    alive["yes"] = True
    wait_for(lambda: len(dead.activities) == 5, timeout=30, what="all five after the probe")
    wait_for(lambda: pending(app) == 0, what="no delivery left")
    row = host_row(app, dead)
    assert row["paused_until"] is None and row["failures"] == 0 and row["delivered"] == 5


def test_host_down_for_too_long_is_dropped(app, users, live, monkeypatch, receivers):
    closed = Receiver()
    closed.stop()  # nothing listens on its port: connections are refused
    app.config["FEDERATION_DEAD_AFTER_SECONDS"] = 1.5  # here and in the consumer
    start_site(live, monkeypatch, FEDERATION_DEAD_AFTER_SECONDS=1.5)
    for number in range(3):
        deliver(app, note(20 + number), [closed.inbox])
    wait_for(lambda: (host_row(app, closed) or {}).get("dropped") == 3, timeout=30,
             what="three deliveries dropped")  # fmt: skip
    assert pending(app, closed) == 0
    # A new delivery to a host that is dead is dropped at once, and counted.
    deliver(app, note(30), [closed.inbox])
    assert pending(app, closed) == 0 and host_row(app, closed)["dropped"] == 4


def test_two_consumers_share_a_fan_out_on_postgres_and_redis(
    postgres_url, pg_app, tmp_path, monkeypatch, receivers
):
    if not REDIS_URL:
        pytest.skip("REDIS_URL is not set: the Redis variant runs only where Redis is available")
    from tests.live import LiveSite

    inboxes = [receivers(lambda n: (time.sleep(0.02), 202)[1]) for _ in range(200)]
    settings = {**FAST, "FEDERATION_DELIVERY_BATCH": 20, "FEDERATION_DELIVERY_CONCURRENCY": 8}
    pg_app.config.update(settings)
    site = LiveSite(
        tmp_path,
        redis_url=REDIS_URL,
        DATABASE_URL=postgres_url,
        FEDERATION_ALLOW_HTTP="true",
        FEDERATION_ALLOW_PRIVATE="true",
        **settings,
    )
    try:
        monkeypatch.setattr(tasks.huey, "name", site.huey_name)
        monkeypatch.setattr(tasks.huey, "storage_class", worker.RedisStorage)
        monkeypatch.setattr(tasks.huey, "storage_kwargs", {"url": REDIS_URL})
        monkeypatch.setattr(tasks.huey, "storage", tasks.huey.create_storage())
        first, second = site.start_consumer(), site.start_consumer()
        deliver(pg_app, note(40), [r.inbox for r in inboxes])
        wait_for(lambda: all(r.activities for r in inboxes), timeout=60, what="every inbox")
        wait_for(lambda: pending(pg_app) == 0, what="no delivery left")
        assert all(r.activities == {note(40)["id"]: 1} for r in inboxes), "no duplicates"
        rounds = [line for line in site.consumer_log().splitlines() if "Delivery round on" in line]
        for consumer in (first, second):
            assert any(f":{consumer.pid}:" in line for line in rounds), (
                f"consumer {consumer.pid} sent nothing: {rounds}"
            )
    finally:
        site.stop()


def in_own_loop(coroutine_function, *args):
    """Run a coroutine in an event loop of its own thread, as the consumer's sender does: the
    browser tests' Playwright keeps a loop running in this one, where asyncio.run refuses."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine_function(*args)).result()


def test_connections_go_to_the_checked_address_only(receivers):
    """A name that DNS does not know still reaches the address its check pinned, and a name
    with no pin is not connected to at all: no second lookup can send a request elsewhere."""
    receiver = receivers()
    limits = Limits(4, 16, 1.0, 2.0, 1.0)

    async def post_to(host):
        async with make_client(limits, {"pinned.invalid": "127.0.0.1"}) as client:
            url = f"http://{host}:{receiver.port}/inbox"
            answer = await client.post(url, content=b'{"id": "https://a.example/1"}')
            return answer.status_code

    with pytest.raises(httpx.ConnectError, match="was not checked"):
        in_own_loop(post_to, "unpinned.invalid")
    assert receiver.requests == 0
    # The receiver answers 202 only with a JSON id: count the request itself.
    in_own_loop(post_to, "pinned.invalid")
    assert (
        receiver.requests == 1 and receiver.headers[0]["Host"] == f"pinned.invalid:{receiver.port}"
    )
