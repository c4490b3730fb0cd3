"""Small inbox servers on loopback for the delivery tests and benchmark: each counts what it
receives (by activity id) and answers as its script says (a status, a Retry-After, or no
answer at all), so a test can play a healthy server, a failing one or a dead one."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A script's answer: a status, (status, headers), or HANG (accept, read, never answer).
HANG = "hang"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the sender's client expects

    def log_message(self, format, *args):  # quiet
        pass

    def do_POST(self):
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        answer = receiver.arrived(self.path, dict(self.headers), body)
        if answer == HANG:
            receiver.release.wait()
            self.close_connection = True
            return
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
        receiver.answered(self.path)


class Receiver:
    """An inbox server on 127.0.0.1. `script(n)` answers the n-th request (from 1); by
    default 202. `activities` counts the activity ids received; `times` has when each
    request arrived; `busy_max` is the most requests it ever held at once."""

    def __init__(self, script=None):
        self.script = script or (lambda n: 202)
        self.activities = Counter()
        self.times = []
        self.headers = []
        self.bodies = []
        self.requests = 0
        self.busy = 0
        self.busy_max = 0
        self.lock = threading.Lock()
        self.release = threading.Event()  # lets hung requests end (at shutdown)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.receiver = self
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.inbox = f"http://{self.host}/inbox"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def arrived(self, path, headers, body):
        with self.lock:
            self.requests += 1
            number = self.requests
            self.busy += 1
            self.busy_max = max(self.busy_max, self.busy)
            self.times.append(time.monotonic())
            self.headers.append(headers)
            self.bodies.append(body)
        answer = self.script(number)
        if answer != HANG and 200 <= (answer[0] if isinstance(answer, tuple) else answer) < 300:
            with self.lock:
                self.activities[json.loads(body)["id"]] += 1
        return answer

    def answered(self, path):
        with self.lock:
            self.busy -= 1

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
