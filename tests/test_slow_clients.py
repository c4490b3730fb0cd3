"""Slow clients against the real web server: connections that send their request a byte a
second (headers, or a signed-in upload's body) must not keep the site from answering, and the
server must close them once they are over the configured time.

Three times as many slow connections as the server has threads, all on the loopback
interface, each test bounded to a few seconds past the server's deadline.
"""

import http.client
import select
import socket
import threading
import time
import uuid

import pytest

from tests.conftest import PASSWORD
from tests.live import WEB_THREADS, Browser

# Short deadlines for the server under test, so that the test waits only seconds.
HEAD_TIMEOUT = 3  # the whole request head must arrive within this many seconds
MIN_UPLOAD_RATE = 1000  # bytes a second a body must keep up, on average, after that
SLOW_CONNECTIONS = 3 * WEB_THREADS  # start_web() runs one worker of WEB_THREADS threads
ANSWER_WITHIN = 2.0  # seconds /healthz may take while the slow connections are held


class Trickler:
    """Sockets that each send `prefix` at once, then the next byte of their own request once
    a second, from one thread; `closed_after` records, per socket, how long after its first
    byte the server closed it."""

    def __init__(self, port: int, requests: list[bytes], prefix: bytes = b""):
        self.requests = requests
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in requests]
        for sock in self.sockets:
            sock.sendall(prefix)
        self.sent = [0] * len(requests)
        self.began = time.monotonic()
        self.closed_after: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            for i, sock in enumerate(self.sockets):
                if i not in self.closed_after:
                    self._send_next(i, sock)
            self.stop.wait(1.0)

    def _send_next(self, i: int, sock: socket.socket):
        readable, _, _ = select.select([sock], [], [], 0)
        try:
            if readable and not sock.recv(4096):  # the server closed the connection
                raise ConnectionResetError
            if self.sent[i] < len(self.requests[i]):
                sock.send(self.requests[i][self.sent[i] : self.sent[i] + 1])
                self.sent[i] += 1
        except OSError:
            self.closed_after[i] = time.monotonic() - self.began

    def all_closed(self) -> bool:
        return len(self.closed_after) == len(self.sockets)

    def close(self):
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def site(live):
    site = live(WEB_HEAD_TIMEOUT=HEAD_TIMEOUT, WEB_MIN_UPLOAD_RATE=MIN_UPLOAD_RATE)
    site.start_web()
    return site


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def healthz_seconds(port: int) -> float:
    """How long /healthz took to answer 200 (fails after ANSWER_WITHIN seconds)."""
    began = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_WITHIN)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
    except TimeoutError:
        pytest.fail(f"/healthz did not answer within {ANSWER_WITHIN} s")
    finally:
        connection.close()
    assert response.status == 200
    return time.monotonic() - began


def assert_survives(trickler: Trickler, port: int, closed_by: float):
    """While the slow connections are held /healthz answers; then the server closes each of
    them, not before HEAD_TIMEOUT and by `closed_by` seconds after its first byte."""
    time.sleep(1.5)  # each slow connection has sent its first bytes: a server read them
    assert not trickler.closed_after, "the server closed slow connections at once"
    assert healthz_seconds(port) < ANSWER_WITHIN
    deadline = time.monotonic() + closed_by + 3
    while not trickler.all_closed() and time.monotonic() < deadline:
        time.sleep(0.1)
    times = sorted(trickler.closed_after.values())
    assert trickler.all_closed(), f"{len(times)} of {len(trickler.sockets)} closed: {times}"
    assert HEAD_TIMEOUT - 0.5 <= times[0] and times[-1] <= closed_by + 2, times
    assert healthz_seconds(port) < ANSWER_WITHIN


def test_slow_request_heads_hold_no_thread_and_are_closed(site):
    port = port_of(site.url)
    # A head that would take minutes at a byte a second: it never ends within the test.
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 500 + b"\r\n\r\n"
    trickler = Trickler(port, [head] * SLOW_CONNECTIONS)
    try:
        assert_survives(trickler, port, closed_by=HEAD_TIMEOUT)
    finally:
        trickler.close()


def test_slow_upload_bodies_hold_no_thread_and_are_closed(site):
    browser = Browser(site.url)
    browser.login("alice", PASSWORD)
    token, cookie = browser.csrf_token("/import"), browser.cookie_header()
    boundary = uuid.uuid4().hex
    form_head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="outbox.json"\r\n'
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    # An archive of a megabyte, announced in full, of which only the start ever comes.
    head = (
        "POST /import HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {cookie}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(form_head) + 1024 * 1024}\r\n\r\n"
    ).encode()
    port = port_of(site.url)
    # The head and the form's start arrive at once; the file then trickles a byte a second.
    trickler = Trickler(port, [b"{" * 600] * SLOW_CONNECTIONS, prefix=head + form_head)
    try:
        sent = len(head) + len(form_head) + HEAD_TIMEOUT * 2
        assert_survives(trickler, port, closed_by=HEAD_TIMEOUT + sent / MIN_UPLOAD_RATE + 1)
    finally:
        trickler.close()
