#!/usr/bin/env python
"""Benchmark the scale-out setup: PostgreSQL + Redis, two gunicorn workers, three consumers.

40 users with 20,000 posts each all request "Export your posts" at once (real HTTP POSTs
with their CSRF token, as a browser sends them) while 16 connections keep loading /index.
Prints the time until every export is done, the /index requests/s, median and p95 latency
and errors (before and during the exports), and checks that every file holds each of its
user's posts exactly once, in order. Then the same again with one consumer SIGKILLed
mid-run: every task must still end `done` (none `failed`, none stuck) within a minute of
the kill.

The database is created (or emptied) and migrated; the queue is a Redis database of the
bench's own, under a queue name of its own, deleted afterwards. Run with
`python tests/bench_scaleout.py [--users 40] [--posts 20000] [--redis-url URL]
[--database-url URL]`.
"""

import argparse
import http.client
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from database import db, utcnow
from microblog import create_app  # noqa: E402
from tests.helpers import add_user  # noqa: E402
from tests.live import Browser, LiveSite, wait_for  # noqa: E402

PASSWORD = "bench password"
DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/microblog_bench_scaleout"
REDIS_URL = "redis://127.0.0.1:6379/7"
# Every task must end within this long after a consumer is killed.
RECOVERY_TARGET = 60.0
# The bench signs in 56 times from one address: more than the default limit allows.
SITE_SETTINGS = {"SIGN_IN_LIMIT_PER_IP": 10_000, "SIGN_IN_LIMIT_PER_USER": 10_000}


# --- the database ------------------------------------------------------------------------


def fresh_database(url: str) -> None:
    """Drop and create the database named in `url` (connecting to `postgres` to do so)."""
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()


def seed(app, users: int, posts: int) -> list[tuple[int, str]]:
    """`users` users with `posts` posts each, a second apart, written with COPY; the
    (id, username) of each. Their language is set, as for posts written through the site
    (otherwise the worker's one-time language lookup would run during the benchmark)."""
    password_hash = generate_password_hash(PASSWORD)
    accounts = [(add_user(app, f"user{n}", password_hash), f"user{n}") for n in range(users)]
    first = utcnow() - timedelta(seconds=posts)
    moments = [first + timedelta(seconds=i) for i in range(posts)]
    with app.app_context():
        connection = db.engine.raw_connection()
        try:
            cursor = connection.cursor()
            with cursor.copy("COPY post (body, timestamp, user_id, language) FROM STDIN") as copy:
                for user_id, username in accounts:
                    for i, moment in enumerate(moments):
                        body = f"Post number {i} of {username}, with some words to make it real."
                        copy.write_row((body, moment, user_id, "en"))
            connection.commit()
            cursor.execute("ANALYZE")
            connection.commit()
        finally:
            connection.close()
        db.engine.dispose()
    return accounts


# --- the /index load, in a process of its own (the bench's threads share one GIL) ------------


def session_cookie(browser: Browser) -> str:
    jar = next(h for h in browser.opener.handlers if hasattr(h, "cookiejar")).cookiejar
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


def load_index(url: str, cookies: list[str], stop, results) -> None:
    """One thread per cookie, each on its own keep-alive connection, GETting /index until
    `stop` is set; sends (start, seconds, status) of every request to `results`."""
    host, port = url.removeprefix("http://").split(":")
    samples: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def client(cookie: str) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        mine = []
        while not stop.is_set():
            started = time.time()
            try:
                connection.request("GET", "/index", headers={"Cookie": cookie})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
            mine.append((started, time.time() - started, status))
        connection.close()
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client, args=(cookie,)) for cookie in cookies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.send(samples)


class IndexLoad:
    """16 (or so) signed-in connections loading /index, from a child process."""

    def __init__(self, url: str, cookies: list[str]):
        context = multiprocessing.get_context("fork")
        self.stop_event = context.Event()
        self.receiver, sender = context.Pipe(duplex=False)
        self.process = context.Process(
            target=load_index, args=(url, cookies, self.stop_event, sender), daemon=True
        )
        self.process.start()

    def stop(self) -> list[tuple[float, float, int]]:
        self.stop_event.set()
        samples = self.receiver.recv()
        self.process.join()
        return samples


def describe_load(samples, since: float, until: float) -> str:
    window = [(seconds, status) for started, seconds, status in samples if since <= started < until]
    latencies = sorted(seconds for seconds, status in window if status == 200)
    errors = sum(1 for _seconds, status in window if status != 200)
    if len(latencies) < 2:
        return f"{len(latencies)} requests, {errors} errors"
    median = statistics.median(latencies) * 1000
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[-1] * 1000
    rate = len(window) / (until - since)
    return f"{rate:6.1f} req/s, median {median:5.0f} ms, p95 {p95:5.0f} ms, {errors} errors"


# --- one run: everyone exports at once ------------------------------------------------


def signed_in(site: LiveSite, username: str) -> Browser:
    browser = Browser(site.url)
    browser.login(username, PASSWORD)
    return browser


def export_all(site: LiveSite, browsers: dict[str, Browser]) -> tuple[float, list[float]]:
    """Every browser POSTs /export_posts at the same moment (the CSRF token fetched before);
    the moment they were released (time.time()) and each POST's seconds (with its redirect)."""
    tokens = {name: browser.csrf_token("/index") for name, browser in browsers.items()}
    barrier = threading.Barrier(len(browsers) + 1)
    seconds: list[float] = []
    failures: list[str] = []

    def post(name: str) -> None:
        barrier.wait()
        started = time.perf_counter()
        status, body = browsers[name].submit("/export_posts", {"csrf_token": tokens[name]})
        seconds.append(time.perf_counter() - started)
        if status != 200 or b"already in progress" in body:
            failures.append(f"{name}: {status}")

    threads = [threading.Thread(target=post, args=(name,)) for name in browsers]
    for thread in threads:
        thread.start()
    barrier.wait()
    released = time.time()
    for thread in threads:
        thread.join()
    assert not failures, failures
    return released, seconds


def tasks_since(site: LiveSite, since) -> list[dict]:
    rows = site.query(
        "SELECT id, user_id, status, crashes, consumer_id, result_file FROM task "
        "WHERE name = 'export_posts' AND created_at >= :since",
        {"since": since},
    )
    keys = ("id", "user_id", "status", "crashes", "consumer_id", "result_file")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def wait_until_ended(site: LiveSite, since, count: int, timeout: float) -> list[dict]:
    """The run's tasks once all `count` have ended (or `timeout` passed: some still active)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = tasks_since(site, since)
        ended = [t for t in tasks if t["status"] not in ("queued", "running")]
        if len(ended) == count or time.monotonic() > deadline:
            return tasks
        time.sleep(0.05)


def check_exports(site: LiveSite, tasks: list[dict]) -> list[str]:
    """What is wrong with the files: each must list its user's posts, each once, in order."""
    problems = []
    for task in tasks:
        if task["status"] != "done":
            problems.append(f"task {task['id']} ended {task['status']}")
            continue
        path = site.data_dir / "exports" / task["result_file"]
        posts = orjson.loads(path.read_bytes())["posts"]
        expected = [
            post_id
            for (post_id,) in site.query(
                "SELECT id FROM post WHERE user_id = :user ORDER BY timestamp, id",
                {"user": task["user_id"]},
            )
        ]
        ids = [post["id"] for post in posts]
        if ids != expected:
            problems.append(
                f"task {task['id']}: {len(ids)} posts ({len(set(ids))} distinct), "
                f"expected {len(expected)}"
            )
        path.unlink()  # 40 files of 2 MB each: keep the disk use down
    return problems


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(site: LiveSite, accounts, index_cookies, consumers: int, kill: bool) -> bool:
    """Start `consumers` consumers, everyone exports at once under the /index load, and
    (with `kill`) one consumer is SIGKILLed mid-run; prints the figures, True when all is well."""
    workers = [site.start_consumer() for _ in range(consumers)]
    browsers = {username: signed_in(site, username) for _id, username in accounts}
    since = utcnow() - timedelta(seconds=1)
    time.sleep(3)  # the consumers' workers build their app as they start
    load = IndexLoad(site.url, index_cookies)
    time.sleep(5)  # the load alone, for comparison
    quiet_until = time.time()
    killer = None
    if kill:  # watching from the first POST: the exports may end as soon as the POSTs do
        killer = KillOneMidRun(site, since, workers, len(accounts))
        killer.start()
    released, post_seconds = export_all(site, browsers)
    killed_at = None
    if killer is not None:
        killer.join()
        killed_at = killer.killed_at
    timeout = RECOVERY_TARGET if kill else 600
    tasks = wait_until_ended(site, since, len(accounts), timeout=timeout)
    ended_at = time.time()
    samples = load.stop()
    rss = [peak_rss_mib(process.pid) for process in site.consumers]
    for process in list(site.consumers):
        site.stop_consumer(process)
    counts = {s: sum(1 for t in tasks if t["status"] == s) for s in {t["status"] for t in tasks}}
    problems = check_exports(site, tasks)
    label = "one consumer SIGKILLed" if kill else "all consumers healthy"
    print(f"--- {len(accounts)} exports at once, {consumers} consumers, {label}")
    print(
        f"POSTs: median {statistics.median(post_seconds) * 1000:.0f} ms, "
        f"max {max(post_seconds) * 1000:.0f} ms (with the redirect to the profile)"
    )
    print(
        f"all {len(accounts)} ended {ended_at - released:.2f} s after the POSTs were sent: {counts}"
    )
    if killed_at is not None:
        crashed = sum(1 for t in tasks if t["crashes"])
        recovered = (
            f"{ended_at - killed_at:.2f} s after the kill (target < {RECOVERY_TARGET:.0f} s)"
        )
        print(
            f"killed a consumer {killed_at - released:.2f} s after the POSTs were sent; "
            f"{crashed} tasks resumed; all ended {recovered}"
        )
    print(f"/index alone:        {describe_load(samples, quiet_until - 5, quiet_until)}")
    print(f"/index during export: {describe_load(samples, released, ended_at)}")
    print(f"consumers' peak RSS: {', '.join(f'{r:.0f}' for r in rss)} MiB")
    print("every export holds each post once, in order" if not problems else "\n".join(problems))
    ok = not problems and counts == {"done": len(accounts)}
    if kill:
        ok = ok and killed_at is not None and ended_at - killed_at < RECOVERY_TARGET
    return ok


class KillOneMidRun(threading.Thread):
    """SIGKILLs the consumer running the most exports once a quarter of them are done and
    some are running; `killed_at` is when (time.time()), None if every export ended first."""

    def __init__(self, site: LiveSite, since, workers, count: int):
        super().__init__()
        self.site, self.since, self.workers, self.count = site, since, workers, count
        self.killed_at: float | None = None

    def run(self) -> None:
        running = wait_for(self.mid_run, timeout=600, interval=0.02, what="the exports mid-run")
        if running is True:
            print("every export ended before one could be killed", flush=True)
            return
        pids = [int(consumer_id.split(":")[1]) for consumer_id in running if consumer_id]
        victim = max(self.workers, key=lambda process: pids.count(process.pid))
        print(
            f"killing consumer {victim.pid}, running {pids.count(victim.pid)} exports", flush=True
        )
        self.site.stop_consumer(victim, signal.SIGKILL)  # reaped, as run.sh reaps its children
        self.killed_at = time.time()

    def mid_run(self):
        """The running tasks' consumer ids once it is time to kill; True when too late."""
        tasks = tasks_since(self.site, self.since)
        running = [t["consumer_id"] for t in tasks if t["status"] == "running"]
        ended = sum(t["status"] not in ("queued", "running") for t in tasks)
        if ended == self.count:
            return True
        return running if ended >= self.count // 4 and running else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--posts", type=int, default=20_000, help="posts per user")
    parser.add_argument("--readers", type=int, default=16, help="connections loading /index")
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", REDIS_URL))
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DATABASE_URL)
    )
    args = parser.parse_args()

    fresh_database(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        data_dir = Path(tmp)
        app = create_app(
            {
                "DATA_DIR": str(data_dir),
                "SQLALCHEMY_DATABASE_URI": args.database_url,
                "REDIS_URL": None,
            }
        )
        from flask_migrate import upgrade

        from schema_migrations import init_migrations

        init_migrations(app)  # as `flask db` does
        with app.app_context():
            upgrade()
            db.engine.dispose()
        started = time.perf_counter()
        accounts = seed(app, args.users, args.posts)
        print(
            f"seeded {args.users} users x {args.posts:,} posts in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        site = LiveSite(
            data_dir, redis_url=args.redis_url, DATABASE_URL=args.database_url, **SITE_SETTINGS
        )
        ok = True
        try:
            site.start_web(workers=args.web_workers)
            readers = [signed_in(site, username) for _id, username in accounts[: args.readers]]
            cookies = [session_cookie(browser) for browser in readers]
            for kill in (False, True):
                ok = run(site, accounts, cookies, args.consumers, kill) and ok
        finally:
            site.stop()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
