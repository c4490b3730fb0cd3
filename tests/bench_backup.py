#!/usr/bin/env python
"""Benchmark `flask backup` on SQLite with 1M posts while the site takes writes.

Seeds one user with 1,000,000 posts, serves the data dir with gunicorn and keeps two
clients posting through the API the whole time. Reports how long `flask --app microblog
backup FILE` takes (a real process, start-up included), the posts written while it ran with
their slowest response, the posting rate with and without a backup running, and checks the
copy with `PRAGMA integrity_check`.

Run with `./run.sh bench` or `python tests/bench_backup.py [--posts 1000000]`.
"""

import argparse
import base64
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import closing
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from werkzeug.security import generate_password_hash  # noqa: E402

from database import db
from microblog import create_app  # noqa: E402
from tests.helpers import add_posts, add_user  # noqa: E402
from tests.live import BIN, PROJECT_DIR, LiveSite, server_env  # noqa: E402

PASSWORD = "bench password"
WRITERS = 2


class Writer(threading.Thread):
    """Posts through the API (`POST /api/posts`), as fast as the site answers; records each
    response time. (Not the web form: its redirect renders a timeline, which would be most of
    what is measured.)"""

    def __init__(self, url: str, username: str):
        super().__init__(daemon=True)
        self.url = url
        credentials = base64.b64encode(f"{username}:{PASSWORD}".encode()).decode()
        token = self.call("/api/tokens", None, {"Authorization": f"Basic {credentials}"})
        self.headers = {
            "Authorization": f"Bearer {token['token']}",
            "Content-Type": "application/json",
        }
        self.stop = threading.Event()
        self.done: list[tuple[float, float]] = []  # (finished at, seconds taken)

    def call(self, path, body, headers):
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.url + path, data, headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def run(self):
        while not self.stop.is_set():
            start = time.perf_counter()
            self.call("/api/posts", {"body": "a post"}, self.headers)
            self.done.append((time.perf_counter(), time.perf_counter() - start))


def between(writers, start: float, end: float) -> list[float]:
    return [took for w in writers for at, took in w.done if start <= at <= end]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        data_dir = Path(tmp)
        app = create_app({"DATA_DIR": str(data_dir)})
        with app.app_context():
            db.create_all()
        started = time.perf_counter()
        hashed = generate_password_hash(PASSWORD)
        author = add_user(app, "author", hashed)
        add_posts(app, author, args.posts, body="Post {i}, with some words.", step=timedelta(0, 1))
        for n in range(WRITERS):
            add_user(app, f"writer{n}", hashed)
        with app.app_context():
            db.engine.dispose()
        size = (data_dir / "app.db").stat().st_size / 1024 / 1024
        print(
            f"seeded {args.posts:,} posts ({size:.0f} MB) in {time.perf_counter() - started:.0f} s"
        )

        site = LiveSite(data_dir)
        try:
            url = site.start_web()
            writers = [Writer(url, f"writer{n}") for n in range(WRITERS)]
            for writer in writers:
                writer.start()
            time.sleep(5)
            quiet_start = time.perf_counter()
            time.sleep(5)
            quiet = between(writers, quiet_start, time.perf_counter())

            target = data_dir / "copy.db"
            start = time.perf_counter()
            result = subprocess.run(
                [BIN / "flask", "--app", "microblog", "backup", str(target)],
                cwd=PROJECT_DIR,
                env=server_env(data_dir),
                capture_output=True,
                text=True,
            )
            end = time.perf_counter()
            assert result.returncode == 0, result.stderr
            during = between(writers, start, end)
            for writer in writers:
                writer.stop.set()
            for writer in writers:
                writer.join()
        finally:
            site.stop()

        with closing(sqlite3.connect(target)) as conn:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
            copied = conn.execute("SELECT count(*) FROM post").fetchone()[0]
        print(f"flask backup: {end - start:.2f} s wall (process start included); it said:")
        print(f"  {result.stdout.strip()}")
        print(
            f"posts written while it ran: {len(during)} "
            f"({len(during) / (end - start):.0f}/s; slowest {max(during, default=0) * 1000:.0f} ms)"
            f"; without a backup: {len(quiet) / 5:.0f}/s (slowest {max(quiet) * 1000:.0f} ms)"
        )
        print(f"copy: integrity_check={integrity}, {copied:,} posts")
        assert integrity == "ok" and copied >= args.posts


if __name__ == "__main__":
    main()
