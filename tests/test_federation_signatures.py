"""The HTTP Signatures we send and accept, checked by implementations nobody here wrote.

httpsig verifies every request our server sent to a bovine server (deliveries signed by the
user whose activity they carry, fetches signed by our instance actor); http-message-signatures
signs an RFC 9421 request, as Mastodon 4.5 sends them, that our inbox must accept. Both run
in .venv-httpsig (tests/clients/).
"""

import json

import pytest
import requests

from tests.federation_clients import ACTIVITY_JSON, actor_url, run_client
from tests.test_federation_bovine import (
    activity,
    follows_alice,
    publish,
    signed_in,
    wait_for_activity,
)

pytestmark = pytest.mark.consumer


def signature_field(headers: dict, name: str) -> str:
    """A parameter of a draft-cavage Signature header (keyId, algorithm, headers, …)."""
    signature = {k.lower(): v for k, v in headers.items()}["signature"]
    for part in signature.split(","):
        key, _, value = part.partition("=")
        if key.strip() == name:
            return value.strip().strip('"')
    raise AssertionError(f"no {name} in {signature}")


def public_key_of(key_id: str) -> str:
    """The PEM our server publishes for `key_id` (an actor document's publicKey)."""
    response = requests.get(key_id.split("#", 1)[0], headers={"Accept": ACTIVITY_JSON}, timeout=30)
    assert response.status_code == 200, (key_id, response.status_code)
    document = response.json()
    key = document.get("publicKey", document)
    assert key["id"] == key_id, (key_id, key)
    return key["publicKeyPem"]


def httpsig_verdicts(entries: list[dict]) -> list[dict]:
    """httpsig's verdict on each captured request, with the key its keyId names."""
    requests_to_check = [
        {
            "method": entry["method"],
            "path": entry["path"],
            "headers": entry["headers"],
            "body": entry.get("body"),
            "public_key": public_key_of(signature_field(entry["headers"], "keyId")),
        }
        for entry in entries
    ]
    return run_client("httpsig", "httpsig_verify.py", requests_to_check)


def test_httpsig_verifies_our_deliveries(our_site, remote_peer):
    zoe = remote_peer.command("actor", name="zoe")
    alice, _follow = follows_alice(our_site, remote_peer, zoe)
    publish(signed_in(our_site), "Signed and sealed")
    wait_for_activity(remote_peer, "Create", signed_by=alice["id"])
    deliveries = [e for e in remote_peer.command("received") if e["method"] == "POST"]
    assert len(deliveries) >= 2  # the Accept and the Create
    for entry, verdict in zip(deliveries, httpsig_verdicts(deliveries), strict=True):
        assert verdict["verified"] is True, (verdict, entry)
        assert verdict["algorithm"] in ("rsa-sha256", "hs2019"), verdict
        assert {"(request-target)", "host", "date", "digest"} <= set(verdict["covered"])
        assert verdict["digest_matches"] is True, entry
        # Signed with the key of the actor whose activity it carries.
        assert verdict["key_id"] == alice["publicKey"]["id"]
        assert json.loads(entry["body"])["actor"] == alice["id"]


def test_httpsig_verifies_our_signed_fetches(our_site, remote_peer):
    zoe = remote_peer.command("actor", name="zoe")
    # Our server fetched zoe's actor to check the Follow's signature.
    alice, _follow = follows_alice(our_site, remote_peer, zoe)
    fetches = [
        e
        for e in remote_peer.command("received")
        if e["method"] == "GET" and e["path"].startswith("/users/")
    ]
    assert fetches, "our server never fetched zoe's actor"
    for entry in fetches:
        headers = {name.lower() for name in entry["headers"]}
        assert "signature" in headers, f"unsigned fetch of {entry['path']}: {entry['headers']}"
    for entry, verdict in zip(fetches, httpsig_verdicts(fetches), strict=True):
        assert verdict["verified"] is True, (verdict, entry)
        assert {"(request-target)", "host", "date"} <= set(verdict["covered"])
        # Fetched as the instance actor, not as one of our users.
        assert verdict["key_id"] != alice["publicKey"]["id"]


def rfc9421_post(actor: dict, url: str, body: dict, tamper: bool = False) -> requests.Response:
    """POST `body` to `url` with an RFC 9421 signature made by http-message-signatures
    with `actor`'s key; with `tamper`, the body is changed after signing."""
    text = json.dumps(body)
    spec = {
        "method": "POST",
        "url": url,
        "body": text,
        "key_id": actor["key_id"],
        "private_key": actor["private_key"],
    }
    headers = run_client("httpsig", "rfc9421_sign.py", spec)
    if tamper:
        text = text.replace("Follow", "Block")
    return requests.post(url, data=text.encode(), headers=headers, timeout=30)


def test_rfc9421_signed_follow_is_accepted(our_site, remote_peer):
    rose = remote_peer.command("actor", name="rose")
    alice_id = actor_url(our_site, "alice")
    alice = json.loads(remote_peer.command("get", actor="rose", url=alice_id)["body"])
    follow = activity("Follow", rose, alice_id)
    tampered = rfc9421_post(rose, alice["inbox"], follow, tamper=True)
    assert tampered.status_code == 401, tampered.text[:300]
    response = rfc9421_post(rose, alice["inbox"], follow)
    assert response.status_code == 202, response.text[:300]
    wait_for_activity(remote_peer, "Accept", signed_by=alice_id)
    followers = json.loads(remote_peer.command("get", actor="rose", url=alice["followers"])["body"])
    assert followers["totalItems"] == 1
