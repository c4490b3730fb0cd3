"""A live Microblog for tests and benchmarks: gunicorn and huey_consumer subprocesses.

Both run from the project root on a temporary data dir, configured only through the
environment, exactly as `./run.sh` starts them. `Browser` is a small HTTP client that logs
in and submits forms with their CSRF token.
"""

import http.cookiejar
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def wait_for(predicate, timeout=30.0, interval=0.02, what="condition"):
    """Poll `predicate` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveSite:
    """A data dir plus the web and worker processes started on it."""

    def __init__(self, data_dir: Path, redis_url: str | None = None, **env):
        self.data_dir = Path(data_dir)
        self.huey_name = f"microblogtest{uuid.uuid4().hex[:12]}"
        self.redis_url = redis_url
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DATABASE_URL", "REDIS_URL", "MAIL_SERVER", "SECRET_KEY", "ADMINS"}
        }
        self.env.update(
            MICROBLOG_DATA_DIR=str(self.data_dir),
            HUEY_NAME=self.huey_name,
            PYTHONUNBUFFERED="1",
        )
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.env.update({key: str(value) for key, value in env.items()})
        self.web = None
        self.url = None
        self.consumers = []

    # --- processes ------------------------------------------------------------------
    def _spawn(self, args, log_name, env=None):
        log = open(self.data_dir / log_name, "ab")  # closed in stop_consumer() / stop()
        process = subprocess.Popen(
            args,
            cwd=PROJECT_DIR,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process.log_file = log
        return process

    def start_web(self) -> str:
        """gunicorn on a free port (bound by gunicorn itself); returns the base URL."""
        self.web = self._spawn(
            [
                BIN / "gunicorn",
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--threads",
                "4",
                "microblog:create_app()",
            ],
            "web.log",
        )
        log = self.data_dir / "web.log"

        def listening():
            if self.web.poll() is not None:
                raise AssertionError(f"gunicorn exited:\n{log.read_text()}")
            match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text())
            return match and match.group(1)

        self.url = wait_for(listening, what="gunicorn to listen")
        return self.url

    def start_consumer(self, workers=2, **env):
        """huey_consumer with run.sh's flags; returns once it has written its heartbeat."""
        process = self._spawn(
            [
                BIN / "huey_consumer",
                "tasks.huey",
                "-w",
                str(workers),
                "-k",
                "thread",
                "-d",
                "0.01",
                "-m",
                "0.5",
                "-b",
                "1.1",
            ],
            "consumer.log",
            {key: str(value) for key, value in env.items()},
        )
        self.consumers.append(process)
        marker = f"PID {process.pid}"
        wait_for(
            lambda: self._alive(process) and marker in self.consumer_log(),
            what="the consumer to start",
        )
        return process

    def _alive(self, process):
        if process.poll() is not None:
            raise AssertionError(f"huey_consumer exited:\n{self.consumer_log()}")
        return True

    def consumer_log(self) -> str:
        path = self.data_dir / "consumer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_consumer(self, process, sig=signal.SIGINT, timeout=30):
        process.send_signal(sig)
        process.wait(timeout=timeout)
        process.log_file.close()
        self.consumers.remove(process)

    def stop(self):
        for process in list(self.consumers):
            if process.poll() is None:
                self.stop_consumer(process, signal.SIGINT)
            else:
                process.log_file.close()
                self.consumers.remove(process)
        if self.web is not None:
            self.web.terminate()
            self.web.wait(timeout=30)
            self.web.log_file.close()
            self.web = None
        if self.redis_url:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(f"*{self.huey_name}*"))
            if keys:
                client.delete(*keys)
            client.close()

    # --- the database, read directly -------------------------------------------------
    def query(self, sql, params=()):
        conn = sqlite3.connect(self.data_dir / "app.db", timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def task(self, task_id=None):
        """The task row (as a dict): by id, else the most recent one."""
        sql = "SELECT * FROM task " + ("WHERE id = ?" if task_id else "ORDER BY created_at DESC")
        conn = sqlite3.connect(self.data_dir / "app.db", timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(sql, (task_id,) if task_id else ()).fetchone()
            return dict(row) if row else None
        finally:
            conn.close()

    def wait_for_status(self, task_id, *statuses, timeout=60):
        def reached():
            row = self.task(task_id)
            return row if row and row["status"] in statuses else None

        try:
            return wait_for(reached, timeout=timeout, interval=0.01, what=f"status {statuses}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; row: {self.task(task_id)}\n{self.consumer_log()[-3000:]}"
            ) from None


class Browser:
    """Just enough of a browser: cookies, forms with CSRF tokens, no JavaScript."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path) -> tuple[int, bytes, dict]:
        try:
            with self.opener.open(self.base_url + path, timeout=30) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read(), dict(error.headers)

    def csrf_token(self, path="/login") -> str:
        _status, body, _headers = self.get(path)
        return CSRF_FIELD.search(body.decode()).group(1)

    def submit(self, path, data=None, token_from="/login") -> tuple[int, bytes]:
        data = dict(data or {})
        if "csrf_token" not in data:
            data["csrf_token"] = self.csrf_token(token_from)
        encoded = urllib.parse.urlencode(data).encode()
        try:
            with self.opener.open(self.base_url + path, data=encoded, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    def login(self, username, password):
        status, body = self.submit("/login", {"username": username, "password": password})
        assert status == 200 and b"Logout" in body, body[:500]
