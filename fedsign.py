"""HTTP Signatures between servers: every request we send is signed, every inbox POST verified.

Outgoing requests carry a draft-cavage signature (`rsa-sha256` over `(request-target) host
date`, plus `digest` when there is a body), which is what Mastodon and GoToSocial expect.
Incoming ones may carry draft-cavage (`rsa-sha256`, `hs2019`) or RFC 9421 signatures (what
Mastodon 4.5 sends); the latter are checked by the `http-message-signatures` library, the
former here on `cryptography`'s primitives (no maintained library implements the draft).

A signature alone proves little: the body must match the signed digest and the date must be
recent, or a captured request could be replayed or given another body. Both are checked.
"""

import base64
import datetime
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import http_message_signatures as hms
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

# A signed request older or newer than this (by its Date or `created`) is refused: a
# delivery is signed when it is sent, so only clock drift and network delay fall within it.
MAX_CLOCK_SKEW = datetime.timedelta(minutes=15)

# The longest Signature header we parse; real ones are a few hundred bytes.
MAX_SIGNATURE_HEADER = 8192

ACTIVITY_JSON = "application/activity+json"

KeyLookup = Callable[[str], str | None]


class SignatureError(Exception):
    """A request's signature is missing, malformed, expired or does not verify."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyMismatch(SignatureError):
    """The signature did not verify with the key we have: a fresher key might (rotation)."""


# --- keys -------------------------------------------------------------------------------


def new_key_pair() -> tuple[str, str]:
    """A new RSA-2048 key pair: (private PEM, public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return private_pem, public_pem_of(key.public_key())


def public_pem_of(key: Any) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@functools.lru_cache(maxsize=1024)
def _load_public_key(pem: str) -> Any:
    """A public key parsed once (the inbox verifies many requests with each sender's key):
    parsing costs several times the verification itself."""
    try:
        return serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnicodeEncodeError):
        raise SignatureError("the actor's public key cannot be read") from None


# --- signing ----------------------------------------------------------------------------


def body_digest(body: bytes) -> str:
    """The value of a `Digest` header for `body`."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign_request(
    method: str,
    url: str,
    *,
    key_id: str,
    private_pem: str,
    body: bytes | None = None,
    content_type: str | None = None,
) -> dict[str, str]:
    """The headers to send with a request: Host, Date, Digest and Content-Type when there is
    a body, and a draft-cavage Signature (rsa-sha256) covering them and the request target."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = {"Host": parts.netloc.rpartition("@")[2], "Date": formatdate(usegmt=True)}
    covered = ["(request-target)", "host", "date"]
    if body is not None:
        headers["Digest"] = body_digest(body)
        headers["Content-Type"] = content_type or ACTIVITY_JSON
        covered.append("digest")
    lines = _signing_string(method, target, covered, {k.lower(): v for k, v in headers.items()})
    key = _private_key(private_pem)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("signing keys are RSA keys")
    signature = key.sign(lines.encode(), padding.PKCS1v15(), hashes.SHA256())
    headers["Signature"] = (
        f'keyId="{key_id}",algorithm="rsa-sha256",headers="{" ".join(covered)}",'
        f'signature="{base64.b64encode(signature).decode()}"'
    )
    return headers


@functools.lru_cache(maxsize=256)
def _private_key(pem: str) -> Any:
    """A private key parsed once: loading one checks it, which costs 20 to 50 ms, far more
    than the signature itself (a fan-out signs a request per server with one key)."""
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _signing_string(
    method: str, target: str, covered: list[str], headers: Mapping[str, str]
) -> str:
    """The draft-cavage signing string: one `name: value` line per covered header."""
    lines = []
    for name in covered:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        elif name in headers:
            lines.append(f"{name}: {headers[name]}")
        else:
            raise SignatureError(f"the signed header {name!r} is missing")
    return "\n".join(lines)


# --- verifying --------------------------------------------------------------------------


def verify_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None,
    public_key_for: KeyLookup,
    *,
    scheme: str = "https",
    now: datetime.datetime | None = None,
) -> str:
    """Check a request's signature; return the verified keyId or raise SignatureError.

    `path` is the request target (path and query); `public_key_for(key_id)` gives the PEM of
    the key or None. A body must match the signed `Digest` (or `Content-Digest`); the Date
    (or the signature's creation time) must lie within MAX_CLOCK_SKEW of `now`. `scheme`
    completes the target URI for RFC 9421 signatures that cover it.
    """
    lower = {name.lower(): value for name, value in headers.items()}
    now = now or datetime.datetime.now(datetime.UTC)
    if "signature-input" in lower:
        return _verify_rfc9421(method, path, lower, body, public_key_for, scheme)
    return _verify_cavage(method, path, lower, body, public_key_for, now)


def _verify_cavage(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None,
    public_key_for: KeyLookup,
    now: datetime.datetime,
) -> str:
    params = parse_signature_header(headers.get("signature") or _authorization(headers))
    key_id, signature = params.get("keyid"), params.get("signature")
    if not key_id or not signature:
        raise SignatureError("the signature has no keyId or no signature")
    if params.get("algorithm", "hs2019").lower() not in {"rsa-sha256", "hs2019"}:
        raise SignatureError("the signature algorithm is not supported")
    covered = params.get("headers", "date").lower().split()
    _check_coverage(covered, method, body)
    _check_time(headers, params, covered, now)
    if body:
        _check_digest(headers, body)
    values = dict(headers)
    for pseudo in ("created", "expires"):
        if pseudo in params:
            values[f"({pseudo})"] = params[pseudo]
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise SignatureError("the signature is not base64") from None
    lines = _signing_string(method, path, covered, values).encode()
    _check_key_signature(public_key_for(key_id), raw, lines)
    return key_id


def _authorization(headers: Mapping[str, str]) -> str:
    scheme, _, rest = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "signature":
        raise SignatureError("the request is not signed")
    return rest


_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"([^"]*)"|([0-9]+))\s*(?:,|$)')


def parse_signature_header(value: str) -> dict[str, str]:
    """The parameters of a draft-cavage Signature header, names lower-cased."""
    if len(value) > MAX_SIGNATURE_HEADER:
        raise SignatureError("the Signature header is too long")
    params: dict[str, str] = {}
    position = 0
    while position < len(value):
        match = _PARAM.match(value, position)
        if not match:
            raise SignatureError("the Signature header cannot be parsed")
        params[match[1].lower()] = match[2] if match[2] is not None else match[3]
        position = match.end()
    return params


def _check_coverage(covered: list[str], method: str, body: bytes | None) -> None:
    """A signature must bind the method and path, the time, the host and (with a body) the
    body's digest; otherwise it could be moved onto another request."""
    missing = {"(request-target)", "host"} - set(covered)
    if not ({"date", "(created)"} & set(covered)):
        missing.add("date")
    if body and "digest" not in covered:
        missing.add("digest")
    if missing:
        raise SignatureError("the signature does not cover " + ", ".join(sorted(missing)))


def _check_time(
    headers: Mapping[str, str],
    params: Mapping[str, str],
    covered: list[str],
    now: datetime.datetime,
) -> None:
    if "(created)" in covered:
        created = _timestamp(params.get("created"))
    else:
        created = _http_date(headers.get("date", ""))
    if abs(now - created) > MAX_CLOCK_SKEW:
        raise SignatureError("the request's date is outside the accepted window")
    if "expires" in params and _timestamp(params["expires"]) < now - MAX_CLOCK_SKEW:
        raise SignatureError("the signature has expired")


def _timestamp(value: str | None) -> datetime.datetime:
    try:
        return datetime.datetime.fromtimestamp(int(value or ""), datetime.UTC)
    except (ValueError, OverflowError, OSError):
        raise SignatureError("the signature's time cannot be read") from None


def _http_date(value: str) -> datetime.datetime:
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise SignatureError("the Date header is missing or cannot be read") from None
    if date.tzinfo is None:
        date = date.replace(tzinfo=datetime.UTC)
    return date


def _check_digest(headers: Mapping[str, str], body: bytes) -> None:
    """The body must match a SHA-256 `Digest`; other algorithms in the header are ignored."""
    expected = body_digest(body).partition("=")[2]
    for item in headers.get("digest", "").split(","):
        algorithm, _, value = item.strip().partition("=")
        if algorithm.lower() == "sha-256":
            if hmac.compare_digest(value.strip().encode(), expected.encode()):
                return
            raise SignatureError("the body does not match its Digest")
    raise SignatureError("the request has no SHA-256 Digest of its body")


def _check_key_signature(pem: str | None, signature: bytes, data: bytes) -> None:
    if pem is None:
        raise KeyMismatch("the signing key is unknown")
    key = _load_public_key(pem)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise SignatureError("the actor's key type is not supported")
    except InvalidSignature:
        raise KeyMismatch("the signature does not verify") from None


# --- RFC 9421 ---------------------------------------------------------------------------


class _Message:
    """The request as http-message-signatures reads it."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str]) -> None:
        self.method = method.upper()
        self.url = url
        self.headers = dict(headers)


class _Keys(hms.HTTPSignatureKeyResolver):
    """Looks each key id up once, however many algorithms are tried."""

    def __init__(self, public_key_for: KeyLookup) -> None:
        self.public_key_for = public_key_for
        self.found: dict[str, str | None] = {}

    def resolve_public_key(self, key_id: str) -> bytes | None:
        if key_id not in self.found:
            self.found[key_id] = self.public_key_for(key_id)
        pem = self.found[key_id]
        return pem.encode() if pem else None

    def resolve_private_key(self, key_id: str) -> bytes:
        raise NotImplementedError("only verification here")


def _verifier_class(window: datetime.timedelta) -> type[hms.HTTPMessageVerifier]:
    return type("Verifier", (hms.HTTPMessageVerifier,), {"max_clock_skew": window})


_RFC9421_ALGORITHMS = (
    hms.algorithms.RSA_V1_5_SHA256,
    hms.algorithms.RSA_PSS_SHA512,
    hms.algorithms.ED25519,
)


def _verify_rfc9421(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None,
    public_key_for: KeyLookup,
    scheme: str,
) -> str:
    """The library checks the creation time against the real clock (not `now`)."""
    if len(headers.get("signature-input", "")) > MAX_SIGNATURE_HEADER:
        raise SignatureError("the Signature-Input header is too long")
    if body and "content-digest" not in headers and "digest" in headers:
        _check_digest(headers, body)  # a Digest beside RFC 9421: the body must still match
    message = _Message(method, f"{scheme}://{headers.get('host', '')}{path}", headers)
    keys = _Keys(public_key_for)
    verifier_class = _verifier_class(MAX_CLOCK_SKEW)
    failure = "the signature does not verify"
    for algorithm in _RFC9421_ALGORITHMS:
        verifier = verifier_class(signature_algorithm=algorithm, key_resolver=keys)
        try:
            results = verifier.verify(message, max_age=MAX_CLOCK_SKEW, body=body or None)
        except hms.InvalidSignature as exc:
            failure = str(exc)
            continue
        except hms.HTTPMessageSignaturesException as exc:
            raise SignatureError(f"the signature cannot be read: {exc}") from None
        return _rfc9421_key_id(results[0], body)
    if keys.found:  # the time and the form were fine: the key failed
        raise KeyMismatch(failure)
    raise SignatureError(failure)


def _rfc9421_key_id(result: Any, body: bytes | None) -> str:
    covered = {name.strip('"').split(";")[0] for name in result.covered_components}
    if "@method" not in covered or not (
        "@target-uri" in covered or {"@authority", "@path"} <= covered
    ):
        raise SignatureError("the signature does not cover the method and target")
    if body and result.body is None:
        raise SignatureError("the signature does not cover the body's digest")
    return str(result.parameters["keyid"])
