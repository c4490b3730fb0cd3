"""The rate limiter counts the same way on every store: a sliding window over attempts."""

import os
import uuid

import pytest

import ratelimit

# Read at import: the `app` fixture removes REDIS_URL from the environment.
REDIS_URL = os.environ.get("REDIS_URL")

STORES = [
    "database",
    pytest.param(
        "redis",
        marks=pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set (CI sets it)"),
    ),
]


@pytest.fixture(params=STORES)
def store(request, app):
    """The app configured for one store; Redis keys under a prefix of this test's own."""
    if request.param == "redis":
        prefix = f"test-ratelimit-{uuid.uuid4().hex}:"
        app.config.update(REDIS_URL=REDIS_URL, RATE_LIMIT_PREFIX=prefix)
        yield request.param
        with app.app_context():
            client = ratelimit._redis_client(REDIS_URL)
            keys = client.keys(f"{prefix}*")
            if keys:
                client.delete(*keys)
            client.close()
    else:
        yield request.param


def hits_at(app, monkeypatch, times, limit=2, window=60):
    """What `hit` answers for one key at each of `times` (seconds from an arbitrary start)."""
    start = 1_700_000_000.25  # a fraction, so whole-second rounding is exercised
    answers = []
    with app.test_request_context():
        for offset in times:
            monkeypatch.setattr(ratelimit, "clock", lambda offset=offset: start + offset)
            answers.append(ratelimit.hit("probe", limit, window))
    return answers


def test_sliding_window(app, store, monkeypatch):
    # Two attempts at 0 and 50 fill the window. At 55 the wait is until the first leaves
    # (at 60); at 61 it has left, so one more is counted; at 62 the ones at 50 and 61 fill
    # it again until 110. A fixed window would have allowed 61 *and* 62.
    assert hits_at(app, monkeypatch, [0, 50, 55, 61, 62]) == [0, 0, 5, 0, 48]


def test_refused_attempts_are_not_counted(app, store, monkeypatch):
    # Knocking all through the window does not extend the wait.
    assert hits_at(app, monkeypatch, [0, 1, 10, 20, 30, 59, 60.5], limit=1) == [
        0,
        59,
        50,
        40,
        30,
        1,
        0,
    ]


def test_at_most_the_limit_in_any_window(app, store, monkeypatch):
    # An attempt every 7 s for 5 minutes against 3 per 30 s: never more than 3 counted
    # in any 30-second span, and the limit is used (not refused forever).
    times = [7 * n for n in range(43)]
    answers = hits_at(app, monkeypatch, times, limit=3, window=30)
    counted = [t for t, wait in zip(times, answers, strict=True) if wait == 0]
    assert all(len([c for c in counted if t <= c < t + 30]) <= 3 for t in counted)
    assert len(counted) >= len(times) * 3 // 5


def test_a_short_window_does_not_forget_what_a_long_one_counts(app, monkeypatch):
    # An hourly limit of 1, then ten minutes later a 5-minute limit's attempt (which prunes
    # what it no longer counts): the hourly one still refuses.
    start = 1_700_000_000.0
    with app.test_request_context():
        monkeypatch.setattr(ratelimit, "clock", lambda: start)
        assert ratelimit.hit("hourly", 1, 3600) == 0
        monkeypatch.setattr(ratelimit, "clock", lambda: start + 600)
        assert ratelimit.hit("five-minutes", 1, 300) == 0
        assert ratelimit.hit("hourly", 1, 3600) == 3000


def test_the_pages_and_the_api_refuse_in_the_same_words(app, client, users):
    """One table of refusals: a flooded token endpoint says what the sign-in page says."""
    import base64

    app.config.update(API_TOKEN_LIMIT_PER_USER=1, SIGN_IN_LIMIT_PER_USER=1)
    basic = base64.b64encode(b"alice:wrong").decode()
    answers = [
        client.post("/api/tokens", headers={"Authorization": f"Basic {basic}"}) for _ in range(2)
    ]
    assert [answer.status_code for answer in answers] == [401, 429]
    message = answers[1].json["message"]
    assert message.startswith("Too many token requests from your address. Please wait ")
    assert message.endswith(" and try again.")
    for _ in range(2):
        page = client.submit("/login", {"username": "alice", "password": "wrong"})
    assert page.status_code == 429
    assert "Too many sign-in attempts from your address. Please wait " in page.get_data(
        as_text=True
    )


# --- the inbox's limit, counted in batches --------------------------------------------


def batched_hits(app, monkeypatch, counters, times, limit, window=60):
    """What each attempt gets, at each of `times`, from the counter of the "process" given by
    `counters` (a list as long as `times`): they share one database, as gunicorn's workers do."""
    start = 1_700_000_000.25
    answers = []
    with app.test_request_context():
        for counter, offset in zip(counters, times, strict=True):
            monkeypatch.setattr(ratelimit, "clock", lambda offset=offset: start + offset)
            answers.append(counter.hit("inbox:probe", limit, window))
    return answers


def stored_hits(app):
    import sqlalchemy as sa

    from database import db
    from models import RateLimitHit

    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count(RateLimitHit.id)))


def test_batched_counts_as_the_database_does(app, monkeypatch):
    # 100 per 60 s, a batch of 5: one process lets exactly the limit through, writes every
    # attempt it allowed, and refuses until the first of them leaves the window.
    counter = ratelimit.BatchedCounter()
    times = [n * 0.1 for n in range(120)]
    answers = batched_hits(app, monkeypatch, [counter] * 120, times, limit=100)
    assert answers[:100] == [0] * 100
    assert answers[100] == 50 and set(answers[101:]) <= {48, 49, 50}
    assert stored_hits(app) == 100
    # The first attempt (at 0) leaves the window at 60.
    assert batched_hits(app, monkeypatch, [counter] * 2, [59.0, 60.05], limit=100) == [1, 0]


def test_batched_writes_seldom_while_far_from_the_limit(app, monkeypatch):
    writes = []
    original = ratelimit._write_batch
    monkeypatch.setattr(
        ratelimit, "_write_batch", lambda *args: writes.append(args[0]) or original(*args)
    )
    counter = ratelimit.BatchedCounter()
    times = [n * 0.01 for n in range(40)]  # 40 attempts in 0.4 s, against 1000 per minute
    assert batched_hits(app, monkeypatch, [counter] * 40, times, limit=1000) == [0] * 40
    # The first attempt is counted in the database (nothing was read yet); the next 39 are
    # kept: a batch of 50 is not reached in under a second.
    assert len(writes) == 1
    later = [1.5]  # over a second later: what was kept is written as this one is counted
    assert batched_hits(app, monkeypatch, [counter], later, limit=1000) == [0]
    assert len(writes) == 2 and len(writes[1]) == 39
    assert stored_hits(app) == 41


def test_batched_processes_share_the_count(app, monkeypatch):
    # Two workers, 100 per minute (a batch of 5 each): together they let through the limit
    # and at most a batch more, never twice the limit.
    first, second = ratelimit.BatchedCounter(), ratelimit.BatchedCounter()
    times = [n * 0.05 for n in range(300)]
    counters = [first, second] * 150
    answers = batched_hits(app, monkeypatch, counters, times, limit=100)
    allowed = answers.count(0)
    assert 100 <= allowed <= 105
    assert all(wait > 0 for wait in answers[allowed + 10 :])


def test_small_limits_are_counted_exactly(app, monkeypatch):
    counter = ratelimit.BatchedCounter()
    answers = batched_hits(app, monkeypatch, [counter] * 4, [0, 1, 2, 3], limit=3)
    assert answers == [0, 0, 0, 57]
    assert stored_hits(app) == 3
