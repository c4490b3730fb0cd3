#!/usr/bin/env python
"""Benchmark "Export your posts" with a real consumer on SQLite, against its floor.

For 10k, 100k and 1M posts: the time from the POST to the task being `done` (read straight
from app.db), that time as a ratio to the floor (the same rows read and encoded to JSON in one
tight loop, nothing else), and the consumer's peak RSS (a fresh consumer per size, VmHWM).
Then, after the consumer has been idle for a minute, enqueue-to-start latency (Task.started_at -
Task.created_at) over a series of small exports spaced so that the workers are at their
slowest polling interval.

Run with `./run.sh bench` or `python tests/bench_export.py [--sizes 10000,100000] [--idle 60]
[--repeat 5]` (each size exported that many times: the machine's load makes single runs vary).
"""

import argparse
import http.client
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from database import db
from microblog import create_app  # noqa: E402
from tests.helpers import add_posts, add_user  # noqa: E402
from tests.live import Browser, LiveSite  # noqa: E402

PASSWORD = "bench password"
TARGETS = {10_000: 1.0, 100_000: 5.0, 1_000_000: 3.0}
# POST-to-done over the floor (reading and encoding the same rows, nothing else).
FLOOR_RATIO_TARGET = 1.3
RSS_TARGET_MIB = 100
LATENCY_TARGET = 0.5


def create_schema(data_dir: Path):
    app = create_app({"DATA_DIR": str(data_dir)})
    with app.app_context():
        db.create_all()
    return app


def seed(app, username: str, count: int) -> None:
    """One user with `count` posts, a second apart, the newest a second ago; their language
    set, as for posts written through the site (otherwise the worker's one-time language
    lookup would run during the benchmark)."""
    user_id = add_user(app, username, generate_password_hash(PASSWORD))
    body = f"Post number {{i}} of {username}, with some words to make it realistic."
    add_posts(app, user_id, count, body=body, step=timedelta(seconds=1), language="en")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def export_once(site: LiveSite, username: str) -> tuple[float, dict]:
    """POST /export_posts as `username` and load the page it redirects to, as a browser does;
    seconds until the row is `done`, and the row (with `post_seconds`: the POST's own time)."""
    browser = Browser(site.url)
    browser.login(username, PASSWORD)
    token = browser.csrf_token("/index")
    before = {row[0] for row in site.query("SELECT id FROM task")}
    start = time.perf_counter()
    status, location = post_without_redirect(site.url, browser, "/export_posts", token)
    post_seconds = time.perf_counter() - start
    assert status == 302, status
    assert browser.get(location)[0] == 200
    (task_id,) = {row[0] for row in site.query("SELECT id FROM task")} - before
    row = site.wait_for_status(task_id, "done", "failed", timeout=600)
    elapsed = time.perf_counter() - start
    assert row["status"] == "done", row
    return elapsed, {**row, "post_seconds": post_seconds}


def post_without_redirect(url: str, browser: Browser, path: str, token: str) -> tuple[int, str]:
    """POST a form with the browser's cookies and CSRF token; the status and the Location
    (not followed, so that the POST's own time can be told apart)."""
    jar = next(h for h in browser.opener.handlers if hasattr(h, "cookiejar")).cookiejar
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        headers = {"Cookie": cookies, "Content-Type": "application/x-www-form-urlencoded"}
        connection.request("POST", path, urllib.parse.urlencode({"csrf_token": token}), headers)
        response = connection.getresponse()
        response.read()
        return response.status, urllib.parse.urlsplit(response.getheader("Location", "")).path
    finally:
        connection.close()


def phases(row: dict) -> str:
    """Where the time went, from the row: the POST, queued → started, started → finished."""
    created, started, finished = (
        datetime.fromisoformat(row[key]) for key in ("created_at", "started_at", "finished_at")
    )
    return (
        f"POST {row['post_seconds'] * 1000:.0f} ms, queued->started "
        f"{(started - created).total_seconds() * 1000:.0f} ms, started->finished "
        f"{(finished - started).total_seconds():.2f} s"
    )


def check_export(site: LiveSite, row: dict, count: int) -> None:
    path = site.data_dir / "exports" / row["result_file"]
    with path.open() as f:
        posts = json.load(f)["posts"]
    assert len(posts) == count, (len(posts), count)
    path.unlink()  # keep the disk use of the 1M run down


def floor_seconds(site: LiveSite, username: str, encode=orjson.dumps) -> float:
    """The floor: the same rows read and encoded to the same JSON objects (id, body,
    timestamp) in one tight loop, in this process, with nothing else (no queue, no progress,
    no checkpoints, no file). `encode` is the export's encoder (orjson), or json.dumps for the
    floor of the standard library."""
    conn = sqlite3.connect(site.data_dir / "app.db")
    try:
        (user_id,) = conn.execute("SELECT id FROM user WHERE username = ?", (username,)).fetchone()
        started = time.perf_counter()
        rows = conn.execute(FLOOR_QUERY, (user_id,))
        while batch := rows.fetchmany(FLOOR_BATCH):
            posts = [
                {"id": post_id, "body": body, "timestamp": f"{ts[:10]}T{ts[11:19]}Z"}
                for body, ts, post_id in batch
            ]
            encode(posts)
        return time.perf_counter() - started
    finally:
        conn.close()


# The export's query and batch size.
FLOOR_QUERY = (
    "SELECT post.body, post.timestamp, post.id FROM post WHERE post.user_id = ? "
    "ORDER BY post.timestamp, post.id"
)
FLOOR_BATCH = 5000


def bench_sizes(site: LiveSite, sizes: list[int], repeat: int) -> None:
    for size in sizes:
        ratios = [bench_size(site, size) for _ in range(repeat)]
        if repeat > 1:
            print(
                f"export {size:>9,} posts over {repeat} runs: ratio to the floor best "
                f"{min(ratios):4.2f}x, median {statistics.median(ratios):4.2f}x "
                f"(load average now {os.getloadavg()[0]:.1f})",
                flush=True,
            )


def bench_size(site: LiveSite, size: int) -> float:
    """One export of `size` posts on a fresh consumer, printed with its floor; the ratio."""
    consumer = site.start_consumer()
    time.sleep(1)  # let the workers settle into their polling loop
    elapsed, row = export_once(site, f"user{size}")
    rss = peak_rss_mib(consumer.pid)
    site.stop_consumer(consumer)
    check_export(site, row, size)
    floor = min(floor_seconds(site, f"user{size}") for _ in range(3))
    stdlib_floor = min(floor_seconds(site, f"user{size}", json.dumps) for _ in range(3))
    ratio = elapsed / floor
    target = TARGETS.get(size)
    verdict = "" if target is None else ("ok" if elapsed < target else "MISSED")
    print(
        f"export {size:>9,} posts: {elapsed:6.2f} s POST->done "
        f"(target < {target} s {verdict}); floor {floor:5.2f} s, "
        f"{ratio:4.2f}x ({'ok' if ratio <= FLOOR_RATIO_TARGET else 'MISSED'} "
        f"<= {FLOOR_RATIO_TARGET}x; json.dumps floor {stdlib_floor:5.2f} s); "
        f"file {row['result_size'] / 2**20:6.1f} MiB; "
        f"worker peak RSS {rss:5.1f} MiB "
        f"({'ok' if rss < RSS_TARGET_MIB else 'MISSED'} < {RSS_TARGET_MIB}); {phases(row)}",
        flush=True,
    )
    return ratio


def bench_latency(site: LiveSite, idle: float, samples: int, spacing: float) -> None:
    site.start_consumer()
    print(f"consumer idle for {idle:.0f} s…", flush=True)
    time.sleep(idle)
    latencies = []
    for i in range(samples):
        if i:
            time.sleep(spacing)  # long enough for the workers to back off to -m 0.5
        _elapsed, row = export_once(site, "latency")
        created = datetime.fromisoformat(row["created_at"])
        started = datetime.fromisoformat(row["started_at"])
        latencies.append((started - created).total_seconds())
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[-1]
    print(
        f"enqueue->start over {samples} exports after {idle:.0f} s idle: "
        f"first {latencies[0]:.3f} s, median {statistics.median(latencies):.3f} s, "
        f"p95 {p95:.3f} s, max {max(latencies):.3f} s "
        f"(target p95 < {LATENCY_TARGET} s {'ok' if p95 < LATENCY_TARGET else 'MISSED'})",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--idle", type=float, default=60, help="seconds idle before latency")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=6)
    parser.add_argument("--repeat", type=int, default=1, help="exports per size (best, median)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    os.environ.pop("REDIS_URL", None)  # the targets are for SQLite
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        data_dir = Path(tmp)
        app = create_schema(data_dir)
        started = time.perf_counter()
        for size in sizes:
            seed(app, f"user{size}", size)
        seed(app, "latency", 10)
        with app.app_context():
            db.engine.dispose()
        print(f"seeded {sum(sizes) + 10:,} posts in {time.perf_counter() - started:.1f} s")
        # Many sign-ins from one address: more than the default limits allow.
        site = LiveSite(data_dir, SIGN_IN_LIMIT_PER_IP=10_000, SIGN_IN_LIMIT_PER_USER=10_000)
        try:
            site.start_web()
            bench_sizes(site, sizes, args.repeat)
            if args.samples:
                bench_latency(site, args.idle, args.samples, args.spacing)
        finally:
            site.stop()


if __name__ == "__main__":
    main()
