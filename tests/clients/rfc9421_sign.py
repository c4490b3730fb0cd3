"""Sign a request with RFC 9421 HTTP Message Signatures, as Mastodon 4.5 sends them, using
http-message-signatures (runs in .venv-httpsig).

Reads JSON on stdin: {"method", "url", "body", "key_id", "private_key"}. Prints the headers
to send: Content-Digest, Signature-Input and Signature (rsa-v1_5-sha256 over @method,
@target-uri and content-digest).
"""

import json
import sys

from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms


class Request:
    """The request shape http-message-signatures reads: method, url, headers."""

    def __init__(self, method: str, url: str, headers: dict):
        self.method, self.url, self.headers = method.upper(), url, headers


def signed_headers(spec: dict) -> dict:
    resolver = MappingKeyResolver(
        public_keys={}, private_keys={spec["key_id"]: spec["private_key"].encode()}
    )
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.RSA_V1_5_SHA256, key_resolver=resolver
    )
    request = Request(spec["method"], spec["url"], {"Content-Type": "application/activity+json"})
    body = spec.get("body")
    signer.sign(
        request,
        key_id=spec["key_id"],
        label="sig1",
        covered_component_ids=("@method", "@target-uri"),
        body=body.encode() if body is not None else None,
    )
    return request.headers


if __name__ == "__main__":
    print(json.dumps(signed_headers(json.load(sys.stdin))))
