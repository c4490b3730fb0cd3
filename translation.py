"""Live translation of posts through a LibreTranslate-compatible server (TRANSLATE_URL).

The site sends the server the text of one post, its detected language and the reader's page
language, and shows what comes back in place of the post. Without TRANSLATE_URL nothing is
offered. The standard library's HTTP client is enough for one small JSON POST; it is given
a socket that holds every read and write to one deadline (see `_DeadlineSocket`).
"""

import http.client
import io
import json
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import get_locale
from flask_login import current_user

from i18n import DEFAULT_LANGUAGE

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from models import Post

log = logging.getLogger("microblog.translation")

# A translation service that answers with more than this is not answering about one post.
RESPONSE_MAX_BYTES = 64 * 1024


class TranslationError(Exception):
    """The translation service failed (unreachable, an error status, a malformed answer)."""


class TranslationTimeout(TranslationError):
    """The translation service did not answer within TRANSLATE_TIMEOUT."""


def enabled() -> bool:
    return bool(current_app.config["TRANSLATE_URL"])


def reader_language() -> str:
    """The language the page is rendered in ("en", "es"): what a post is translated into."""
    return str(get_locale() or DEFAULT_LANGUAGE)


def same_language(first: str, second: str) -> bool:
    """ "es" and "es-MX" are the same language as far as translating goes."""
    return first.split("-")[0].lower() == second.split("-")[0].lower()


def offered_for(post: "Post") -> bool:
    """Whether the page shows a "Translate" link under `post`: a service is set, the reader
    is signed in, and the post is in a known language other than the page's. /translate
    translates exactly these posts."""
    return offered(post.known_language, offer_target())


def offer_target() -> str | None:
    """The language this page offers translations into: the page's when a service is set
    and the reader is signed in, else None (asked once for a whole page of posts)."""
    if enabled() and current_user.is_authenticated:
        return reader_language()
    return None


def offered(language: str | None, target: str | None) -> bool:
    """Whether a post in `language` (None: unknown) is offered in `target` (offer_target())."""
    return target is not None and language is not None and not same_language(language, target)


def translate(text: str, source: str, target: str) -> str:
    """`text` in `target`, as the service (POST {TRANSLATE_URL}/translate) returns it.

    The whole exchange (connecting, sending, reading every byte of the answer) ends within
    TRANSLATE_TIMEOUT: a web thread waits no longer, however slowly the service answers.
    """
    config = current_app.config
    payload = {"q": text, "source": source, "target": target, "format": "text"}
    if config["TRANSLATE_API_KEY"]:
        payload["api_key"] = config["TRANSLATE_API_KEY"]
    deadline = time.monotonic() + config["TRANSLATE_TIMEOUT"]
    try:
        status, body = _post_json(config["TRANSLATE_URL"] + "/translate", payload, deadline)
    except TimeoutError as exc:
        raise TranslationTimeout("no answer in time") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise TranslationError(str(exc) or type(exc).__name__) from exc
    if 300 <= status < 400:
        # Never followed: the service names its own address; a redirect could send the
        # post (or, as a GET, a request from this server) anywhere.
        raise TranslationError(f"HTTP {status}: redirects are not followed")
    if not 200 <= status < 300:
        raise TranslationError(f"HTTP {status}: {_error_of(body)}")
    return _translated_text(body)


def _post_json(url: str, payload: dict, deadline: float) -> tuple[int, bytes]:
    """POST `payload` to `url` by `deadline`: the status and at most RESPONSE_MAX_BYTES + 1
    bytes of the body. No redirect is followed (http.client never does)."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    connection_class = _DeadlineHTTPSConnection if https else _DeadlineHTTPConnection
    # The port is always given: http.client would read "::1" as host "::", port 1.
    port = parts.port or (http.client.HTTPS_PORT if https else http.client.HTTP_PORT)
    connection = connection_class(parts.hostname or "", port, deadline=deadline)
    try:
        connection.request(
            "POST",
            parts.path,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        response = connection.getresponse()
        return response.status, response.read(RESPONSE_MAX_BYTES + 1)
    finally:
        connection.close()
        if connection.raw_socket is not None:
            connection.raw_socket.close()


def _time_left(deadline: float) -> float:
    """Seconds until `deadline` (a `time.monotonic()`); TimeoutError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline has passed")
    return left


class _DeadlineSocket:
    """A connected socket whose every send and receive gets only the time left until
    `deadline`. A socket's own timeout bounds each call alone, so a server sending one byte
    a second would hold the caller as long as it liked."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.deadline = deadline

    def sendall(self, data: "ReadableBuffer") -> None:
        self.sock.settimeout(_time_left(self.deadline))  # sendall's timeout is for all of it
        self.sock.sendall(data)

    def recv_into(self, buffer: "WriteableBuffer", nbytes: int = 0) -> int:
        self.sock.settimeout(_time_left(self.deadline))
        return self.sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", buffering: int | None = None) -> io.BufferedReader:
        """What http.client reads the answer from: buffered, over `recv_into` above."""
        assert mode == "rb", mode
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        """Nothing yet: http.client closes the connection before it reads the body of an
        answer the server ends by closing. `_post_json` closes the socket when done."""


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket):
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer") -> int:
        return self.sock.recv_into(buffer)


class _DeadlineHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection held to one deadline, from connecting to the last byte read."""

    def __init__(self, host: str, port: int, deadline: float):
        super().__init__(host, port)
        self.deadline = deadline
        self.raw_socket: socket.socket | None = None  # the real one, under `self.sock`

    def connect(self) -> None:
        # The name lookup inside create_connection is the one step no timeout reaches.
        sock = socket.create_connection((self.host, self.port), _time_left(self.deadline))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.raw_socket = sock  # closed by _post_json even if the TLS handshake fails
        self.raw_socket = self.wrap(sock)
        self.sock = _DeadlineSocket(self.raw_socket, self.deadline)

    def wrap(self, sock: socket.socket) -> socket.socket:
        return sock


class _DeadlineHTTPSConnection(_DeadlineHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def wrap(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(_time_left(self.deadline))  # the TLS handshake
        context = ssl.create_default_context()
        return context.wrap_socket(sock, server_hostname=self.host)


def _error_of(body: bytes) -> str:
    """LibreTranslate's `{"error": "..."}`, for the log."""
    try:
        return str(json.loads(body)["error"])[:200]
    except Exception:
        return "no reason given"


def _translated_text(body: bytes) -> str:
    if len(body) > RESPONSE_MAX_BYTES:
        raise TranslationError("the answer is too large")
    try:
        text = json.loads(body)["translatedText"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TranslationError("the answer has no translatedText") from exc
    if not isinstance(text, str):
        raise TranslationError("translatedText is not text")
    return text
