"""The web server: gunicorn's arbiter (worker processes, signals, restarts) with waitress
serving HTTP inside each worker process (gunicorn.conf.py names `WaitressWorker`).

Why not gunicorn's own thread worker: it hands a connection to an app thread as soon as its
first byte arrives, and that thread then blocks reading the rest of the request with no
deadline, so a few clients sending a byte a second hold every thread. Waitress reads all
connections with non-blocking I/O in one thread and gives an app thread only a complete
request (a large body is buffered in a temporary file first). `DeadlineChannel` adds what
waitress lacks: a deadline for a request's head and a minimum average rate for its body, so
that a slow client cannot keep even a connection open; and, before it reads a large body,
it asks the app whether it wants it (head_check.py): an upload from someone not signed
in, or a body over its endpoint's limit, is answered at once and never read.
"""

import io
import logging
import os
import sys
import threading
import time
from datetime import datetime
from typing import Any

from gunicorn.workers.base import Worker
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import WSGITask

import config
import head_check

# Room for the other fields of a form beside its largest file, on top of the upload limits.
FORM_ROOM_BYTES = 1024 * 1024


class ClosingTask(WSGITask):
    """A request served by waitress, answered with `Connection: close` once the worker is
    stopping: the client then opens its next request elsewhere instead of sending it into
    a connection about to close."""

    def build_response_header(self) -> Any:
        if self.channel.stopping.is_set():
            self.set_close_on_finish()
        return super().build_response_header()


class DeadlineChannel(HTTPChannel):
    """A waitress connection closed when its client is too slow: the head of a request not
    all there `head_timeout` seconds after its first byte; a body arriving at less than
    `min_rate` bytes a second on average after that; no request for `idle_timeout` seconds
    (`head_timeout` for a new connection's first one)."""

    head_timeout = 10.0
    min_rate = 1024.0
    idle_timeout = 2.0
    will_close: bool  # waitress's own flag (no value here: its class keeps the default)
    close_when_flushed: bool  # likewise
    request: Any  # waitress's parser of the request being read (None between requests)
    head_check_app: Any = None  # the WSGI app asked before a large body is read
    head_checked = False
    stopping = threading.Event()  # set when the worker stops (each worker sets its own)
    task_class = ClosingTask

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.request_began = time.monotonic()
        self.request_bytes = 0
        self.waiting_limit = self.head_timeout

    def received(self, data: bytes) -> bool:
        if self.request is None:  # nothing of a request read yet: this starts the next one
            self.request_began, self.request_bytes = time.monotonic(), 0
            self.head_checked = False
        self.request_bytes += len(data)
        result = super().received(data)
        if self.request is None:  # the request is complete (the app has it)
            self.waiting_limit = self.idle_timeout
        elif self.request.headers_finished and not self.head_checked:
            self.head_checked = True
            if self.request.content_length > head_check.HEAD_CHECK_BYTES:
                self.ask_before_reading()
        return result

    def ask_before_reading(self) -> None:
        """Ask the app, from the head alone, whether it wants this large body; when it
        answers anything but "go on", send that answer, drop the request and close."""
        environ = self.task_class(self, self.request).get_environment()
        environ["wsgi.input"] = io.BytesIO()
        environ["wsgi.errors"] = sys.stderr
        environ[head_check.HEAD_CHECK] = True
        answer: list = []

        def start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            answer[:] = [status, headers]
            return lambda _data: None

        body = b"".join(self.head_check_app(environ, start_response))
        status, headers = answer
        if any(name == head_check.HEAD_CHECK_HEADER for name, _value in headers):
            return  # go on reading the body
        kept = [(n, v) for n, v in headers if n.lower() not in ("content-length", "connection")]
        head = "".join(f"{name}: {value}\r\n" for name, value in kept)
        self.request.close()
        self.request = None
        self.write_soon(
            f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
            + body
        )
        self.close_when_flushed = True

    def overdue(self) -> bool:
        if self.requests or self.total_outbufs_len:
            return False  # an app thread has the request, or its answer is being sent
        if self.request is None:  # waiting for a request
            return time.time() - self.last_activity > self.waiting_limit
        age = time.monotonic() - self.request_began
        if not self.request.headers_finished:
            return age > self.head_timeout
        return age > self.head_timeout + self.request_bytes / self.min_rate

    def busy(self) -> bool:
        """Whether a stopping worker must wait for this connection: a request is being
        read, served or answered, or a new connection has yet to send its first one."""
        if self.requests or self.total_outbufs_len or self.request is not None:
            return True
        return self.waiting_limit == self.head_timeout and not self.will_close

    def readable(self) -> bool:
        # Asked of every connection on each turn of the loop, which turns at least once a
        # second: the place to notice a deadline passing.
        if not self.will_close and self.overdue():
            self.will_close = True  # writable() now says so, and the loop closes the socket
        return super().readable()


class WaitressWorker(Worker):
    """A gunicorn worker process serving its app with waitress on gunicorn's sockets:
    `--threads` app threads, `--worker-connections` connections, `--keep-alive` seconds
    for an idle connection between requests."""

    alive: bool  # gunicorn's (no value here: its Worker sets it)

    def run(self) -> None:
        self.stopping = threading.Event()
        connections: dict = {}
        dispatcher = self._serve(connections)
        while self.alive and self.ppid == os.getppid():
            self.notify()
            wasyncore.loop(timeout=1.0, map=connections, use_poll=True, count=1)
        self._finish(connections, dispatcher)

    def listeners(self, connections: dict) -> list:
        return [item for item in connections.values() if isinstance(item, BaseWSGIServer)]

    def _serve(self, connections: dict) -> Any:
        """Start waitress in `connections` (its map of sockets); returns its thread pool."""
        settings = config.load()
        # Waitress warns each time a request waits for a free thread: under any burst that
        # would be a line per request, which gunicorn's own workers never wrote.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        channel = type(
            "Channel",
            (DeadlineChannel,),
            {
                "head_timeout": settings["WEB_HEAD_TIMEOUT"],
                "min_rate": float(settings["WEB_MIN_UPLOAD_RATE"]),
                "idle_timeout": float(self.cfg.keepalive),
                "stopping": self.stopping,
                "head_check_app": self.wsgi,
            },
        )
        largest_upload = max(
            settings["MICROBLOG_IMPORT_MAX_BYTES"], settings["MICROBLOG_AVATAR_MAX_BYTES"]
        )
        server = create_server(
            self._wrapped(self.wsgi),
            map=connections,
            sockets=[listener.sock for listener in self.sockets],
            threads=self.cfg.threads,
            connection_limit=self.cfg.worker_connections,
            max_request_body_size=largest_upload + FORM_ROOM_BYTES,
            # The deadlines above close slow connections long before this backstop.
            channel_timeout=max(60, int(settings["WEB_HEAD_TIMEOUT"]) * 2),
            cleanup_interval=5,
            # X-Forwarded-* are the app's to trust or not (TRUSTED_PROXIES): left as sent.
            clear_untrusted_proxy_headers=False,
            ident="",
            asyncore_use_poll=True,  # select() cannot watch more than 1024 sockets
            # A request head larger than this is refused (431): ample for any browser's
            # cookies, and it bounds what a thousand connections can make a process hold.
            max_request_header_size=64 * 1024,
        )
        for listener in self.listeners(connections):
            listener.channel_class = channel
        self._connections = connections
        return server.task_dispatcher

    def _finish(self, connections: dict, dispatcher: Any) -> None:
        """Stop accepting; let the requests in flight finish, for up to gunicorn's
        `--graceful-timeout`, as gunicorn's own workers do on SIGTERM."""
        self.stopping.set()
        for listener in self.listeners(connections):
            listener.del_channel()  # no new connections (the arbiter closes the socket)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline and any(
            isinstance(item, DeadlineChannel) and item.busy() for item in list(connections.values())
        ):
            self.notify()
            wasyncore.loop(timeout=0.2, map=connections, use_poll=True, count=1)
        dispatcher.shutdown(timeout=1)

    def _stop_accepting(self) -> None:
        """From an app thread: accept no more connections, and wake the loop to stop."""
        self.alive = False
        self.stopping.set()  # this very answer says Connection: close
        listeners = self.listeners(self._connections)
        for listener in listeners:
            listener.accepting = False  # read by the loop before it asks for new connections
        listeners[0].pull_trigger()

    def _wrapped(self, app: Any) -> Any:
        """`app`, counting requests for gunicorn's `--max-requests` (the worker stops after
        that many, and the arbiter starts a fresh one) and writing each to gunicorn's access
        log (`--access-logfile`)."""
        access_log = self.log.access_log if self.cfg.accesslog else None
        lock = threading.Lock()

        def served(environ: dict, start_response: Any) -> Any:
            with lock:
                self.nr += 1
                last = self.nr >= self.max_requests
            if last and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self._stop_accepting()
            status = ["-"]

            def start(line: str, headers: list, exc_info: Any = None) -> Any:
                status[0] = line.split(" ", 1)[0]
                return start_response(line, headers, exc_info)

            try:
                return app(environ, start)
            finally:
                if access_log is not None:
                    access_log.info(access_line(environ, status[0]))

        return served


def access_line(environ: dict, status: str) -> str:
    """One request as gunicorn's default access log writes it (without the size)."""
    query = environ.get("QUERY_STRING")
    target = environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
    request = f"{environ.get('REQUEST_METHOD')} {target} {environ.get('SERVER_PROTOCOL')}"
    moment = datetime.now().astimezone().strftime("[%d/%b/%Y:%H:%M:%S %z]")
    client = environ.get("REMOTE_ADDR", "-")
    referrer, agent = environ.get("HTTP_REFERER", "-"), environ.get("HTTP_USER_AGENT", "-")
    return f'{client} - - {moment} "{request}" {status} - "{referrer}" "{agent}"'
