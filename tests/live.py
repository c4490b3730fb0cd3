"""A live Microblog for tests and benchmarks: gunicorn and huey_consumer subprocesses, or
both forked from one parent (supervise.py), as `./run.sh` starts them.

`start_gunicorn()`, `start_consumer()` and `start_supervised()` are the one way every test
and benchmark starts them: from the project root on a data dir, configured only through the
environment, with run.sh's flags. `LiveSite` is a data dir with its processes; `Browser` is a
small HTTP client that logs in and submits forms with their CSRF token.
"""

import contextlib
import http.client
import http.cookiejar
import itertools
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
from typing import Any

from i18n import show_stored

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


# --- the processes, started one way for every test and benchmark ------------------------

# Settings that would point a server at something real (a database, Redis, a mail server,
# admins to mail) or that it should make up itself (its key).
HOST_SETTINGS = {"DATABASE_URL", "REDIS_URL", "MAIL_SERVER", "SECRET_KEY", "ADMINS"}
# Threads of each web worker process, as run.sh starts them.
WEB_THREADS = 4
# run.sh's consumer flags: thread workers with fast polling.
CONSUMER_FLAGS = ["-k", "thread", "-d", "0.01", "-m", "0.5", "-b", "1.1"]


def server_env(data_dir, **settings) -> dict:
    """This process's environment for a server on `data_dir`, without HOST_SETTINGS, plus
    `settings`."""
    env = {key: value for key, value in os.environ.items() if key not in HOST_SETTINGS}
    env.update(MICROBLOG_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env.update({key: str(value) for key, value in settings.items()})
    return env


def _spawn(command, log: Path, env, pass_fds=(), cwd=PROJECT_DIR) -> subprocess.Popen:
    """Start `command` in the project dir (or `cwd`), its output appended to `log`.

    In a session of its own, like run.sh's servers: a Ctrl-C reaches only the test run, whose
    clean-up then stops each process once (a second SIGINT would make the consumer abandon
    its graceful shutdown).
    """
    log_file = open(log, "ab")  # closed by stop_process()
    process = subprocess.Popen(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        pass_fds=pass_fds,
        start_new_session=True,
    )
    process.log_file = log_file
    process.log_path = Path(log)
    return process


def read_log(process) -> str:
    return process.log_path.read_text(errors="replace") if process.log_path.exists() else ""


def _running(process, name):
    if process.poll() is not None:
        raise AssertionError(f"{name} exited with {process.returncode}:\n{read_log(process)}")
    return True


def start_gunicorn(
    log: Path, env, *options, app="microblog:create_app()", host="127.0.0.1", site_url=False
) -> subprocess.Popen:
    """gunicorn serving `app` with `options` on `host`; returns the process, its base URL in
    `.url`, once a worker answers HTTP. With `site_url`, that URL is its SITE_URL too (the
    federation tests' servers are known to each other by it).

    It serves a socket bound here on a free port and handed over (`fd://`), so no other
    process can take the port in between, whatever the log level.
    """

    def command(bind):
        return [BIN / "gunicorn", "--bind", bind, *options, app]

    return _start_serving(command, "gunicorn", log, env, host, site_url)


def start_supervised(log: Path, env, *options, host="127.0.0.1", site_url=False):
    """supervise.py, as `./run.sh` starts it: the web server (gunicorn's `options`) and the
    consumer (run.sh's flags) forked from one parent that made the app; returns the parent
    once the web answers HTTP on `host` (as start_gunicorn()) and the consumer has logged
    its start. Both write to `log`."""

    def command(bind):
        return [sys.executable, PROJECT_DIR / "supervise.py", "--bind", bind, *options]

    process = _start_serving(command, "supervise.py", log, env, host, site_url)

    def consumer_started():
        _running(process, "supervise.py")
        consumer = child_named(process.pid, "huey_consumer")
        return consumer is not None and f"PID {consumer}" in read_log(process)

    try:
        wait_for(consumer_started, what="the consumer to start")
    except BaseException:
        stop_process(process, signal.SIGKILL)
        raise
    return process


def _start_serving(command, name, log: Path, env, host, site_url) -> subprocess.Popen:
    """`command(bind)` serving HTTP on a socket bound here (see start_gunicorn())."""
    with socket.create_server((host, 0)) as listener:
        port = listener.getsockname()[1]
        fd = listener.fileno()
        if site_url:
            env = {**env, "SITE_URL": f"http://{host}:{port}"}
        process = _spawn(command(f"fd://{fd}"), log, env, pass_fds=[fd])
    process.url = f"http://{host}:{port}"

    def answers():
        _running(process, name)
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return True
        except OSError:  # no worker has booted yet
            return False
        finally:
            connection.close()

    try:
        wait_for(answers, what=f"{name} to answer")
    except BaseException:
        stop_process(process, signal.SIGKILL)
        raise
    return process


def children(pid: int) -> dict[int, str]:
    """The child processes of `pid`: {pid: command name}."""
    found = {}
    with contextlib.suppress(OSError):  # `pid` has ended
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):  # this one has
                found[int(child)] = Path(f"/proc/{child}/comm").read_text().strip()
    return found


def child_named(pid: int, name: str) -> int | None:
    return next((child for child, comm in children(pid).items() if comm == name), None)


def start_consumer(log: Path, env, workers=2, pause_per_batch=None) -> subprocess.Popen:
    """huey_consumer with run.sh's flags; returns once it has logged its start.

    With `pause_per_batch` (seconds) it is the same consumer started through
    tests/slow_consumer.py, which sleeps after each batch of an export so that a test can
    catch the export mid-run.
    """
    arguments = ["tasks.huey", "-w", str(workers), *CONSUMER_FLAGS]
    if pause_per_batch:
        command = [sys.executable, "-m", "tests.slow_consumer", pause_per_batch, *arguments]
    else:
        command = [BIN / "huey_consumer", *arguments]
    process = _spawn(command, log, env)
    started = f"PID {process.pid}"
    try:
        wait_for(
            lambda: _running(process, "huey_consumer") and started in read_log(process),
            what="the consumer to start",
        )
    except BaseException:
        stop_process(process, signal.SIGKILL)
        raise
    return process


def stop_process(process, sig=signal.SIGTERM, timeout=30):
    """Send `sig` and wait for the process to end (gunicorn stops on SIGTERM; the consumer
    gracefully on SIGINT); killed, and an error, if it has not ended within `timeout`."""
    try:
        if process.poll() is None:
            process.send_signal(sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"{process.args[0]} did not stop within {timeout} s") from None
    finally:
        process.log_file.close()


class LiveSite:
    """A data dir plus the web and worker processes started on it."""

    def __init__(self, data_dir: Path, redis_url: str | None = None, **env):
        self.data_dir = Path(data_dir)
        self.huey_name = f"microblogtest{uuid.uuid4().hex[:12]}"
        self.redis_url = redis_url
        self.env = server_env(self.data_dir, HUEY_NAME=self.huey_name, **env)
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.web = None
        self.url = None
        self.consumers = []
        self.supervised = False  # web and consumer forked from self.web (start_all())
        self.consumer_log_path = self.data_dir / "consumer.log"
        # Read directly, as sqlite3 reads app.db: another database is read through SQLAlchemy.
        self.database_url = self.env.get("DATABASE_URL")
        self._engine = None

    def start_web(self, workers=1, host="127.0.0.1", site_url=False) -> str:
        """gunicorn (one worker unless told, WEB_THREADS threads each) on `host`; returns the
        base URL. With `site_url` it is the site's SITE_URL, for the consumers started
        after it too."""
        self.web = start_gunicorn(
            self.data_dir / "web.log",
            self.env,
            "--workers",
            str(workers),
            "--threads",
            str(WEB_THREADS),
            host=host,
            site_url=site_url,
        )
        self.url = self.web.url
        if site_url:
            self.env["SITE_URL"] = self.url
        return self.url

    def start_all(self, workers=1, consumer_workers=2, host="127.0.0.1", site_url=False) -> str:
        """The web server (`workers` processes, WEB_THREADS threads each) and the consumer,
        forked from one parent (supervise.py) as `./run.sh` starts them; returns the base
        URL. `self.web` is the parent: stop() stops both through it. Both write to
        site.log."""
        self.web = start_supervised(
            self.data_dir / "site.log",
            self.env,
            "--workers",
            str(workers),
            "--threads",
            str(WEB_THREADS),
            "--consumer-workers",
            str(consumer_workers),
            host=host,
            site_url=site_url,
        )
        self.supervised = True
        self.consumer_log_path = self.web.log_path
        self.url = self.web.url
        if site_url:
            self.env["SITE_URL"] = self.url
        return self.url

    def consumer_pid(self) -> int | None:
        """The consumer's process: the parent's child (start_all()), else the first one."""
        if self.supervised:
            return child_named(self.web.pid, "huey_consumer")
        return self.consumers[0].pid if self.consumers else None

    def start_consumer(self, workers=2, pause_per_batch=None):
        """A consumer (see start_consumer()); all of the site's consumers share one log."""
        log = self.data_dir / "consumer.log"
        process = start_consumer(log, self.env, workers, pause_per_batch)
        self.consumers.append(process)
        return process

    def consumer_log(self) -> str:
        path = self.consumer_log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_consumer(self, process, sig=signal.SIGINT, timeout=30):
        self.consumers.remove(process)
        stop_process(process, sig, timeout)

    def stop(self):
        """Stop every process (consumers first), even when one of them will not stop."""
        with contextlib.ExitStack() as stack:  # callbacks run last-in first-out
            stack.callback(self._delete_redis_keys)
            if self._engine is not None:
                stack.callback(self._engine.dispose)
            if self.web is not None:
                stack.callback(stop_process, self.web, signal.SIGTERM)
                self.web = None
            for process in self.consumers:
                stack.callback(stop_process, process, signal.SIGINT)
            self.consumers = []

    def _delete_redis_keys(self):
        if self.redis_url:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(f"*{self.huey_name}*"))
            if keys:
                client.delete(*keys)
            client.close()

    # --- the database, read directly -------------------------------------------------
    def engine(self):
        """An SQLAlchemy engine on the site's DATABASE_URL (PostgreSQL), made once."""
        if self._engine is None:
            import sqlalchemy as sa

            self._engine = sa.create_engine(self.database_url, pool_size=2)
        return self._engine

    def query(self, sql, params=()):
        """Rows of `sql` (plain tuples); on PostgreSQL `params` is a dict for `:name`s."""
        if self.database_url:
            import sqlalchemy as sa

            with self.engine().connect() as conn:
                return [tuple(row) for row in conn.execute(sa.text(sql), dict(params or {}))]
        conn = sqlite3.connect(self.data_dir / "app.db", timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def task(self, task_id=None):
        """The task row (as a dict): by id, else the most recent one; `text` is its message
        as an English reader sees it."""
        row = self._task_row(task_id)
        if row is None:
            return None
        message = row["message"]
        return {**row, "text": show_stored(message) if message else None}

    def _task_row(self, task_id) -> dict | None:
        if self.database_url:
            import sqlalchemy as sa

            sql = "SELECT * FROM task " + (
                "WHERE id = :id" if task_id else "ORDER BY created_at DESC"
            )
            with self.engine().connect() as conn:
                found = conn.execute(sa.text(sql), {"id": task_id}).mappings().first()
            return dict(found) if found else None
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


def _chunks(path: Path, size: int = 1 << 20):
    with path.open("rb") as f:
        while chunk := f.read(size):
            yield chunk


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

    def cookie_header(self) -> str:
        """This browser's cookies, as its `Cookie` header would carry them."""
        jar = next(h.cookiejar for h in self.opener.handlers if hasattr(h, "cookiejar"))
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)

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

    def upload(
        self, path, filename: str, content: "bytes | Path", field="file", fields=None
    ) -> tuple[int, bytes]:
        """POST the form at `path` (multipart/form-data): one file as `field`, the text
        `fields`, and the CSRF token. `content` is the file's bytes, or a Path whose file
        is streamed from disk (a benchmark's archive of hundreds of megabytes)."""
        boundary = uuid.uuid4().hex
        texts = {"csrf_token": self.csrf_token(path), **(fields or {})}
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in texts.items()
        ]
        parts.append(
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        head, tail = "".join(parts).encode(), f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if isinstance(content, Path):
            size = content.stat().st_size
            headers["Content-Length"] = str(len(head) + size + len(tail))
            body: Any = itertools.chain([head], _chunks(content), [tail])
        else:
            body = head + content + tail
        request = urllib.request.Request(self.base_url + path, data=body, headers=headers)
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    def login(self, username, password):
        status, body = self.submit("/login", {"username": username, "password": password})
        assert status == 200 and b"Logout" in body, body[:500]
