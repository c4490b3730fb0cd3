"""Benchmark: requests/s for /index, /explore and /user/<name> under concurrent load.

Seeds 200 users × 20 follows and a user with 10,000 posts, starts gunicorn on 127.0.0.1
and hammers each page from 16 keep-alive connections. Run with `./run.sh bench`.
"""

import argparse
import http.client
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, build_opener

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.live import free_port  # noqa: E402 (needs the project on sys.path)

PASSWORD = "benchmark password"


def seed(data_dir: Path, users: int, follows: int, heavy_posts: int, posts_each: int):
    """Fill a fresh database quickly with raw inserts; returns the heavy user's name."""
    from werkzeug.security import generate_password_hash

    from microblog import create_app
    from models import db

    app = create_app({"DATA_DIR": str(data_dir)})
    password_hash = generate_password_hash(PASSWORD)
    rng = random.Random(42)
    start = datetime(2024, 1, 1)
    with app.app_context():
        db.create_all()
        connection = db.session.connection()
        connection.exec_driver_sql(
            "INSERT INTO user (id, username, email, password_hash) VALUES (?, ?, ?, ?)",
            [(i, f"user{i}", f"user{i}@example.com", password_hash) for i in range(1, users + 1)],
        )
        pairs = {
            (u, f)
            for u in range(1, users + 1)
            for f in rng.sample(range(1, users + 1), follows)
            if f != u
        }
        connection.exec_driver_sql(
            "INSERT INTO followers (follower_id, followed_id) VALUES (?, ?)", list(pairs)
        )
        posts = [(f"heavy post {n}", start + timedelta(minutes=n), 1) for n in range(heavy_posts)]
        posts += [
            (f"post {n} of user{u}", start + timedelta(minutes=rng.randrange(heavy_posts)), u)
            for u in range(2, users + 1)
            for n in range(posts_each)
        ]
        connection.exec_driver_sql(
            "INSERT INTO post (body, timestamp, user_id) VALUES (?, ?, ?)", posts
        )
        db.session.commit()
        db.engine.dispose()
    return "user1", len(posts)


def start_gunicorn(data_dir: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "MICROBLOG_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [
            str(gunicorn),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            "4",
            "--log-level",
            "warning",
            "microblog:create_app()",
        ],
        cwd=PROJECT,
        env=env,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def login(base: str, username: str) -> str:
    """Log in through the real form; returns the Cookie header value."""
    jar = CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))
    html = opener.open(f"{base}/login").read().decode()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
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
        port = free_port()
        server = start_gunicorn(data_dir, port, args.workers)
        try:
            base = f"http://127.0.0.1:{port}"
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
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
