"""Check a captured request's draft-cavage HTTP Signature with httpsig (runs in .venv-httpsig).

Reads JSON on stdin: a list of {"method", "path", "headers", "body", "public_key"} (the
request as our server sent it, and the PEM of the key its keyId names). Prints one verdict
each: whether httpsig accepts the signature, which headers it covers, and whether the
Digest header matches the body (httpsig checks only the signature).
"""

import base64
import hashlib
import json
import sys

from httpsig.utils import parse_signature_header
from httpsig.verify import HeaderVerifier


def digest_matches(headers: dict, body: str | None) -> bool | None:
    """Whether Digest is SHA-256 of the body; None when there is no Digest header."""
    digest = headers.get("digest")
    if digest is None:
        return None
    algorithm, _, value = digest.partition("=")
    expected = base64.b64encode(hashlib.sha256((body or "").encode()).digest()).decode()
    return algorithm.lower() == "sha-256" and value == expected


def verdict(request: dict) -> dict:
    headers = {name.lower(): value for name, value in request["headers"].items()}
    signature = parse_signature_header(headers["signature"])
    covered = signature.get("headers", "date").split()
    verifier = HeaderVerifier(
        headers=headers,
        secret=request["public_key"].encode(),
        required_headers=["(request-target)", "host", "date"],
        method=request["method"],
        path=request["path"],
        host=headers.get("host"),
        sign_header="signature",
    )
    try:
        verified = verifier.verify()
        error = None
    except Exception as exc:  # httpsig raises for a malformed or mismatched header
        verified, error = False, repr(exc)
    return {
        "verified": verified,
        "error": error,
        "algorithm": signature.get("algorithm"),
        "key_id": signature.get("keyid"),
        "covered": covered,
        "digest_matches": digest_matches(headers, request.get("body")),
    }


if __name__ == "__main__":
    print(json.dumps([verdict(request) for request in json.load(sys.stdin)]))
