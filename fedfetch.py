"""Every request this site makes to another server (but deliveries, which check their targets
with `check_url` too): fenced, signed, bounded.

Another server names the URLs we fetch (its actor's inbox, icon, key), so each is treated as
an attacker's: plain http and any host that resolves to a loopback, private, link-local or
reserved address are refused (the test settings FEDERATION_ALLOW_HTTP and
FEDERATION_ALLOW_PRIVATE lift that), and the connection goes to the very address that was
checked, so a second DNS answer cannot point it elsewhere. Timeouts are short, answers are
read up to a size cap, and redirects are followed only to URLs that pass the same checks.
"""

import ipaddress
import json
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
import urllib3
from flask import current_app

import actors
import fedsign
from database import db
from models import User

log = logging.getLogger(__name__)

ACCEPT_ACTIVITY = 'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
USER_AGENT = "microblog (ActivityPub)"
MAX_REDIRECTS = 3
# An @name@host handle, as typed into search (the leading @ optional).
HANDLE = re.compile(r"@?([A-Za-z0-9_.-]{1,64})@([A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?)\Z")


class FetchError(Exception):
    """A request to another server failed or its answer is unusable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsafeURL(FetchError):
    """A URL this site must not request (plain http, or an address inside a network)."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


# --- the fence ------------------------------------------------------------------------


def _config(name: str) -> Any:
    return current_app.config[name]


def check_url(url: str) -> None:
    """Raise UnsafeURL unless `url` may be requested (see the module's docstring)."""
    _safe_address(url)


def _safe_address(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, address to connect to) of a URL that passes the fence."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("the URL cannot be read") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme == "http" and not _config("FEDERATION_ALLOW_HTTP"):
        raise UnsafeURL("plain http is refused")
    if scheme not in {"http", "https"} or not host or parts.username or parts.password:
        raise UnsafeURL("only http(s) URLs with a host are requested")
    port = port or (443 if scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not _config("FEDERATION_ALLOW_PRIVATE"):
        for address in addresses:
            if not _is_public(address):
                raise UnsafeURL(f"{host} is not a public address")
    return scheme, host, port, addresses[0]


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise FetchError(f"{host} cannot be resolved") from None
    # IPv4 first: many small servers have no IPv6 route, though their names have AAAA records.
    addresses = sorted({str(info[4][0]) for info in infos}, key=lambda address: ":" in address)
    if not addresses:
        raise FetchError(f"{host} cannot be resolved")
    return addresses


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


# --- requests -------------------------------------------------------------------------


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    max_bytes: int | None = None,
    signer: tuple[str, str] | None = None,
) -> Answer:
    """One fenced request; GETs follow up to MAX_REDIRECTS redirects to safe URLs, each
    signed again. `signer` is a (keyId, private PEM) pair. Raises FetchError."""
    for _ in range(MAX_REDIRECTS + 1):
        answer = _request_once(method, url, headers or {}, body, max_bytes, signer)
        location = answer.headers.get("location")
        if method != "GET" or answer.status not in {301, 302, 303, 307, 308} or not location:
            return answer
        url = _absolute(url, location)
    raise FetchError("too many redirects")


def _absolute(base: str, location: str) -> str:
    if location.startswith(("https://", "http://")):
        return location
    parts = urlsplit(base)
    if location.startswith("/"):
        return f"{parts.scheme}://{parts.netloc}{location}"
    raise FetchError("a redirect to an unusable location")


def _request_once(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    max_bytes: int | None,
    signer: tuple[str, str] | None,
) -> Answer:
    scheme, host, port, address = _safe_address(url)
    sent = {"User-Agent": USER_AGENT, **headers}
    if signer is not None:
        content_type = headers.get("Content-Type")
        sent.update(
            fedsign.sign_request(
                method,
                url,
                key_id=signer[0],
                private_pem=signer[1],
                body=body,
                content_type=content_type,
            )
        )
    else:
        sent["Host"] = urlsplit(url).netloc
    timeout = float(_config("FEDERATION_FETCH_TIMEOUT"))
    pool = _pool(scheme, host, port, address, timeout)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        response = pool.urlopen(
            method,
            target,
            body=body,
            headers=sent,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            data = _read_capped(
                response,
                max_bytes or int(_config("FEDERATION_FETCH_MAX_BYTES")),
                deadline=time.monotonic() + 4 * timeout,
            )
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise FetchError(f"{host}: {type(exc).__name__}") from None
    finally:
        pool.close()
    answer_headers = {name.lower(): value for name, value in response.headers.items()}
    return Answer(response.status, answer_headers, data)


def _pool(scheme: str, host: str, port: int, address: str, timeout: float) -> Any:
    """A connection to `address`, speaking TLS for (and checking the certificate of) `host`."""
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=limits,
            maxsize=1,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
        )
    return urllib3.HTTPConnectionPool(address, port, timeout=limits, maxsize=1)


def _read_capped(response: Any, max_bytes: int, *, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    # isdigit() alone takes "²" (a Latin-1 byte another server may send), which int() refuses.
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("the answer is too large")
    chunks, size = [], 0
    while chunk := response.read(65536):
        size += len(chunk)
        if size > max_bytes:
            raise FetchError("the answer is too large")
        if time.monotonic() > deadline:
            raise FetchError("the answer is too slow")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_json(url: str, *, signed: bool = True) -> dict:
    """A JSON object from another server, asked for as ActivityPub and signed with the
    instance actor's key. Raises FetchError (for any status but 200, too)."""
    signer = actors.signing_key_for(None) if signed else None
    answer = request("GET", url, headers={"Accept": ACCEPT_ACTIVITY}, signer=signer)
    if answer.status != 200:
        raise FetchError(f"{urlsplit(url).netloc} answered {answer.status}")
    return parse_json_object(answer.body)


def parse_json_object(data: bytes) -> dict:
    """A JSON object from bytes, or FetchError (for deep nesting too)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise FetchError("the answer is not JSON") from None
    if not isinstance(document, dict):
        raise FetchError("the answer is not a JSON object")
    return document


def fetch_bytes(url: str, *, max_bytes: int) -> bytes:
    """The body of a GET (remote pictures), at most `max_bytes`. Raises FetchError."""
    answer = request("GET", url, max_bytes=max_bytes)
    if answer.status != 200:
        raise FetchError(f"{urlsplit(url).netloc} answered {answer.status}")
    return answer.body


def post_activity(inbox: str, body: bytes, signer_id: int | None) -> int:
    """POST an activity to an inbox, signed by the key of `signer_id` (None: the instance
    actor); the status of the answer. Raises FetchError."""
    signer = actors.signing_key_for(signer_id)
    headers = {"Content-Type": fedsign.ACTIVITY_JSON, "Accept": ACCEPT_ACTIVITY}
    return request("POST", inbox, headers=headers, body=body, signer=signer).status


# --- finding accounts -----------------------------------------------------------------


def names_remote_account(text: str) -> bool:
    """Whether a search names a remote account: a handle with a host, or a URL."""
    text = text.strip()
    return bool(HANDLE.match(text)) or text.startswith(("https://", "http://"))


def remote_account(handle_or_url: str) -> User:
    """Find or create a remote account by its handle (`@name@host`) or actor URL, fetching it
    when unknown or stale; committed. Raises FetchError."""
    text = handle_or_url.strip()
    match = HANDLE.match(text)
    local = _local_account(text, match)
    if local is not None:
        return local
    if match:
        name, host = match[1], match[2].lower()
        known = User.by_username(f"{name}@{host}")
        if known is not None and known.domain is not None and _fresh(known):
            return known
        actor_url = webfinger(name, host)
    elif text.startswith(("https://", "http://")):
        remote = actors.remote_by_actor_url(text)
        if remote is not None and not remote.is_stale():
            return remote.user
        actor_url = text
    else:
        raise FetchError("that is neither a handle (@name@host) nor a URL")
    return refresh_actor(actor_url)


def _local_account(text: str, match: re.Match[str] | None) -> User | None:
    """The local user a handle or URL of this very site names (None for other sites)."""
    host = match[2].lower() if match else actors.host_of(text)
    if host != actors.site_host().lower():
        return None
    user = User.by_username(match[1]) if match else actors.local_user_for_actor(text)
    if user is None or user.domain is not None:
        raise FetchError("there is no such user here")
    return user


def _fresh(user: User) -> bool:
    remote = actors.remote_actor(user)
    return remote is not None and not remote.is_stale()


def refresh_actor(actor_url: str) -> User:
    """Fetch an actor document and store what it says; committed. Raises FetchError."""
    return store_actor(fetch_json(actor_url), actor_url)


def store_actor(document: dict, fetched_from: str) -> User:
    """Store an actor document read from `fetched_from`; committed. Raises FetchError."""
    try:
        user = actors.store_remote_actor(document, fetched_from=fetched_from)
        db.session.commit()
    except actors.ActorError as exc:
        db.session.rollback()
        raise FetchError(str(exc)) from None
    except sa.exc.IntegrityError:
        # Another request stored the same account a moment ago: this updates that one.
        db.session.rollback()
        try:
            user = actors.store_remote_actor(document, fetched_from=fetched_from)
            db.session.commit()
        except (actors.ActorError, sa.exc.IntegrityError):
            db.session.rollback()
            raise FetchError("the actor clashes with an account known here") from None
    return user


def webfinger(name: str, host: str) -> str:
    """The actor URL WebFinger gives for name@host. Raises FetchError."""
    resource = quote(f"acct:{name}@{host}", safe=":@")
    schemes = ["https", "http"] if _config("FEDERATION_ALLOW_HTTP") else ["https"]
    failure: FetchError | None = None
    for scheme in schemes:
        url = f"{scheme}://{host}/.well-known/webfinger?resource={resource}"
        try:
            answer = request("GET", url, headers={"Accept": "application/jrd+json"})
        except UnsafeURL:
            raise
        except FetchError as exc:
            failure = exc
            continue
        if answer.status != 200:
            raise FetchError(f"{host} does not know {name}")
        return _self_link(parse_json_object(answer.body))
    raise failure or FetchError(f"{host} cannot be reached")


def _self_link(document: dict) -> str:
    links = document.get("links")
    for link in links if isinstance(links, list) else []:
        if not isinstance(link, dict) or link.get("rel") != "self":
            continue
        kind, href = str(link.get("type", "")), link.get("href")
        if ("activity+json" in kind or "ld+json" in kind) and isinstance(href, str):
            return href
    raise FetchError("WebFinger gave no ActivityPub actor")
