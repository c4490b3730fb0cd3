"""Benchmark: requests/s for /index, /explore and /user/<name> under concurrent load.

Seeds 200 users × 20 follows and a user with 10,000 posts, starts gunicorn on 127.0.0.1
and hammers each page from 16 keep-alive connections. Run with `./run.sh bench`.
"""

import argparse
import http.client
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, build_opener

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.helpers import add_posts, add_user, follow  # noqa: E402 (needs the project on sys.path)
from tests.live import CSRF_FIELD, server_env, start_gunicorn, stop_process  # noqa: E402

PASSWORD = "benchmark password"


def seed(data_dir: Path, users: int, follows: int, heavy_posts: int, posts_each: int):
    """Fill a fresh database; returns the heavy user's name and the number of posts."""
    from werkzeug.security import generate_password_hash

    from microblog import create_app
    from models import db

    app = create_app({"DATA_DIR": str(data_dir)})
    password_hash = generate_password_hash(PASSWORD)
    rng = random.Random(42)
    start = datetime(2024, 1, 1)
    with app.app_context():
        db.create_all()
    ids = [add_user(app, f"user{i}", password_hash) for i in range(1, users + 1)]
    for user_id in ids:
        follow(app, user_id, *(f for f in rng.sample(ids, follows) if f != user_id))
    add_posts(app, ids[0], heavy_posts, body="heavy post {i}", start=start)
    for user_id in ids[1:]:
        moments = [start + timedelta(minutes=rng.randrange(heavy_posts)) for _ in range(posts_each)]
        add_posts(app, user_id, posts_each, body=f"post {{i}} of user{user_id}", timestamps=moments)
    with app.app_context():
        db.engine.dispose()
    return "user1", heavy_posts + (users - 1) * posts_each


def login(base: str, username: str) -> str:
    """Log in through the real form; returns the Cookie header value."""
    jar = CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))
    html = opener.open(f"{base}/login").read().decode()
    token = CSRF_FIELD.search(html).group(1)
    form = urlencode({"csrf_token": token, "username": username, "password": PASSWORD})
    opener.open(f"{base}/login", data=form.encode()).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def hammer(port: int, path: str, cookie: str, connections: int, seconds: float):
    """Send GETs from `connections` keep-alive connections for `seconds`."""
    latencies, errors = [], []
    stop_at = time.perf_counter() + seconds

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
            mine.append(time.perf_counter() - began)
        conn.close()
        latencies.extend(mine)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
        "requests": len(latencies),
        "errors": len(errors),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        heavy, total = seed(data_dir, users=200, follows=20, heavy_posts=10_000, posts_each=20)
        print(f"seeded 200 users x 20 follows, {total} posts ({heavy} has 10000)")
        options = ("--workers", str(args.workers), "--threads", "4", "--log-level", "warning")
        server = start_gunicorn(data_dir / "web.log", server_env(data_dir), *options)
        try:
            base = server.url
            port = urlsplit(base).port
            viewers = {"heavy user": heavy, "light user": "user150"}
            for viewer, username in viewers.items():
                cookie = login(base, username)
                for path in ("/index", "/explore", f"/user/{heavy}", "/index?page=40"):
                    hammer(port, path, cookie, 4, 1)  # warm up
                    r = hammer(port, path, cookie, args.connections, args.seconds)
                    print(
                        f"{viewer:10} GET {path:16} {r['rps']:7.1f} req/s  "
                        f"p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  "
                        f"({r['requests']} requests, {r['errors']} errors)"
                    )
        finally:
            stop_process(server)


if __name__ == "__main__":
    main()
