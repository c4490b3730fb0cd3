"""Benchmark: GET /notifications polls per second, 16 keep-alive connections, real gunicorn.

    python tests/bench_notifications.py [--seconds 10] [--connections 16] [--no-baseline]

Serves the app with gunicorn on 127.0.0.1 the way `./run.sh` does (2 workers x 4 threads),
logs a user in, and hammers the poll URL from an asyncio client in this process. It checks that
polling does not write to the database (the WAL does not grow). For comparison it then serves
a "tutorial" variant: the same app plus the tutorial's habit of committing `last_seen` on every
request, with 4 sync workers as in the tutorial's deployment chapter.
"""

import argparse
import asyncio
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from werkzeug.security import generate_password_hash  # noqa: E402

from tests.helpers import add_user  # noqa: E402
from tests.live import CSRF_FIELD, server_env, start_gunicorn, stop_process  # noqa: E402

PASSWORD = "benchmark password"
TARGET = 900  # requests/s: 3x the tutorial's ~300/s


def tutorial_app():
    """The app plus the tutorial's per-request `last_seen` commit (a write per poll)."""
    from flask_login import current_user

    from database import db, utcnow
    from microblog import create_app

    app = create_app()

    @app.before_request
    def write_last_seen_every_time():
        if current_user.is_authenticated:
            current_user.last_seen = utcnow()
            db.session.commit()

    return app


def hello_app():
    """The floor: a Flask app whose /notifications returns [] without any work."""
    from flask import Flask

    app = Flask(__name__)
    app.add_url_rule("/notifications", "notifications", lambda: ([], 200))
    return app


def prepare(data_dir: str) -> None:
    """Migrate a fresh database and create the benchmark user."""
    flask = [sys.executable, "-m", "flask", "--app", "microblog", "db", "upgrade"]
    subprocess.run(flask, cwd=ROOT, env=server_env(data_dir), check=True, capture_output=True)
    from database import db
    from microblog import create_app
    from notifications import notify

    app = create_app({"DATA_DIR": data_dir})
    user_id = add_user(app, "poller", generate_password_hash(PASSWORD))
    with app.app_context():
        notify(user_id, "unread_message_count", 0)
        db.session.commit()
        db.engine.dispose()


def login(base_url: str) -> str:
    """Log in like a browser; returns the session cookie header value."""
    parts = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", "/login")
    response = connection.getresponse()
    cookie = response.getheader("Set-Cookie").split(";")[0]
    token = CSRF_FIELD.search(response.read().decode()).group(1)
    body = urllib.parse.urlencode({"username": "poller", "password": PASSWORD, "csrf_token": token})
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    connection.request("POST", "/login", body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    assert response.status == 302, response.status
    connection.close()
    return response.getheader("Set-Cookie").split(";")[0]


async def poller(host, port, request: bytes, stop_at: float, counts: dict) -> None:
    """One connection polling as fast as the server answers; reconnects if closed."""
    reader = writer = None
    while time.monotonic() < stop_at:
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        await reader.readexactly(length)
        status = head[9:12]
        counts[status] = counts.get(status, 0) + 1
        if re.search(rb"(?i)connection: *close", head):
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def load(base_url: str, cookie: str, connections: int, seconds: float) -> dict:
    parts = urllib.parse.urlsplit(base_url)
    since = time.time()
    request = (
        f"GET /notifications?since={since} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Cookie: {cookie}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    counts: dict = {}
    stop_at = time.monotonic() + seconds
    tasks = [
        poller(parts.hostname, parts.port, request, stop_at, counts) for _ in range(connections)
    ]
    await asyncio.gather(*tasks)
    return counts


def wal_size(data_dir: str) -> int:
    wal = Path(data_dir) / "app.db-wal"
    return wal.stat().st_size if wal.exists() else 0


def database_version(data_dir: str) -> tuple:
    """Changes to app.db (main file + WAL), as seen from outside the server."""
    db_file = Path(data_dir) / "app.db"
    return db_file.stat().st_mtime_ns, db_file.stat().st_size, wal_size(data_dir)


def run(label: str, app_spec: str, gunicorn_args: list[str], args) -> float:
    data_dir = tempfile.mkdtemp(prefix="microblog-bench-")
    prepare(data_dir)
    log = Path(data_dir) / "web.log"
    server = start_gunicorn(log, server_env(data_dir), *gunicorn_args, app=app_spec)
    base_url = server.url
    try:
        cookie = login(base_url) if "hello_app" not in app_spec else "session=none"
        asyncio.run(load(base_url, cookie, args.connections, 2))  # warm up
        before = database_version(data_dir)
        started = time.monotonic()
        counts = asyncio.run(load(base_url, cookie, args.connections, args.seconds))
        elapsed = time.monotonic() - started
        after = database_version(data_dir)
    finally:
        stop_process(server)
    total = sum(counts.values())
    rate = counts.get(b"200", 0) / elapsed
    statuses = ", ".join(f"{k.decode()}: {v}" for k, v in sorted(counts.items()))
    writes = "none" if before == after else f"yes (db/WAL {before} -> {after})"
    print(f"\n{label}\n  gunicorn {' '.join(gunicorn_args)}")
    print(f"  {total} responses in {elapsed:.1f} s ({statuses}) -> {rate:.0f} requests/s")
    print(f"  database writes during the run: {writes}")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"{args.connections} connections, {args.seconds:.0f} s"
    )
    rate = run(
        "Microblog /notifications (as ./run.sh serves it)",
        "microblog:create_app()",
        ["--workers", "2", "--threads", "4"],
        args,
    )
    if not args.no_baseline:
        baseline = run(
            "Tutorial-style baseline (last_seen commit per request, 4 sync workers)",
            "tests.bench_notifications:tutorial_app()",
            ["--workers", "4"],
            args,
        )
        floor = run(
            "For scale: a bare Flask app answering [] (same gunicorn settings)",
            "tests.bench_notifications:hello_app()",
            ["--workers", "2", "--threads", "4"],
            args,
        )
        print(f"\nSpeed-up over the tutorial-style baseline: {rate / baseline:.1f}x")
        print(f"Share of a bare Flask app's rate on this machine now: {rate / floor:.0%}")
    print(f"Target >= {TARGET} requests/s: {'met' if rate >= TARGET else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
