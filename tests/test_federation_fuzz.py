"""Other servers are attackers too: signed-request fuzz of our inboxes.

Each request is built from what bovine signs (tests/clients/bovine_peer.py) and then broken:
no signature, a forged one, a body or Digest that does not match, a Date outside the window,
the key of another actor, a replay, bodies no parser should choke on, and key ids pointing
at places our server must never fetch. Every one gets its 4xx; afterwards the database holds
exactly what it held before, the web log has no traceback, the canary listener on
127.0.0.1 was never reached, and no server process tried an address off this machine
(tests/netguard).
"""

import email.utils
import http.client
import json
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD
from tests.federation_clients import (
    ACTIVITY_JSON,
    PUBLIC,
    actor_url,
    changed_tables,
    database_rows,
)
from tests.live import Browser
from tests.test_federation_bovine import activity, alice_follows, follows_alice

pytestmark = pytest.mark.consumer

HOUR = 3600


def http_date(offset: float = 0) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def send(url: str, body: bytes, headers: dict) -> int:
    """POST `body`; the status of the answer, also when the server answers before reading a
    body it refuses (413) and closes the connection while it is being sent."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        try:
            connection.request("POST", parts.path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer is already on its way
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


class Fuzzer:
    """Signed requests from a bovine actor to one of our inboxes, and ways to break them."""

    def __init__(self, peer, actor: dict, inbox: str):
        self.peer, self.actor, self.inbox = peer, actor, inbox
        self.name = actor["username"]

    def headers(self, body: str | None, url: str | None = None, **options) -> dict:
        """bovine's signed headers for a POST of `body` to `url` (the inbox)."""
        return self.peer.command(
            "sign", actor=self.name, method="post", url=url or self.inbox, body=body, **options
        )

    def note(self, text: str = "fuzz", **fields) -> dict:
        """A new public Create(Note) by this actor: applied, it would add a post."""
        note = {
            "id": f"{self.actor['id']}/notes/{uuid.uuid4().hex}",
            "type": "Note",
            "attributedTo": self.actor["id"],
            "content": f"<p>{text}</p>",
            "to": [PUBLIC],
        }
        return activity("Create", self.actor, {**note, **fields}, to=[PUBLIC])

    def signed(self, document: dict | str, **options) -> tuple[bytes, dict]:
        body = document if isinstance(document, str) else json.dumps(document)
        return body.encode(), self.headers(body, **options)


def edit_signature(headers: dict, name: str, value: str) -> dict:
    """`headers` with one parameter of the Signature header replaced."""
    parts = []
    for part in headers["signature"].split(","):
        key = part.split("=", 1)[0]
        parts.append(f'{key}="{value}"' if key == name else part)
    return {**headers, "signature": ",".join(parts)}


def bad_signature_cases(zoe: Fuzzer, yan: Fuzzer, shared_inbox: str) -> dict:
    """name -> (body, headers): requests whose signature must not be accepted (401)."""
    cases = {}
    body, headers = zoe.signed(zoe.note())
    cases["no signature"] = (body, {k: v for k, v in headers.items() if k != "signature"})
    cases["garbage signature"] = (body, edit_signature(headers, "signature", "AAAA"))
    body, headers = zoe.signed(zoe.note())
    other = yan.headers(body.decode())
    cases["signature by another key"] = (
        body,
        edit_signature(headers, "signature", edit_sig_value(other)),
    )
    body, headers = zoe.signed(zoe.note("signed"))
    cases["body changed after signing"] = (json.dumps(zoe.note("changed")).encode(), headers)
    body, headers = zoe.signed(zoe.note())
    cases["Digest not of the body"] = (
        body,
        {**headers, "digest": "sha-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
    )
    for name, offset in (("Date an hour old", -HOUR), ("Date an hour ahead", HOUR)):
        cases[name] = zoe.signed(zoe.note(), date=http_date(offset))
    # yan's valid signature on an activity that says zoe did it.
    cases["key of another actor"] = yan.signed(zoe.note())
    body = json.dumps(zoe.note()).encode()
    unsigned_body = zoe.headers(None)
    cases["Digest left out of the signature"] = (
        body,
        {
            **unsigned_body,
            "digest": zoe.headers(body.decode())["digest"],
            "content-type": ACTIVITY_JSON,
        },
    )
    cases["signed for another inbox"] = zoe.signed(zoe.note(), url=shared_inbox)
    body, headers = zoe.signed(zoe.note())
    cases["algorithm changed to hmac-sha256"] = (
        body,
        edit_signature(headers, "algorithm", "hmac-sha256"),
    )
    return cases


def edit_sig_value(headers: dict) -> str:
    """The base64 signature value inside a Signature header."""
    return headers["signature"].split('signature="', 1)[1].rstrip('"')


def deep_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def bad_body_cases(zoe: Fuzzer) -> dict:
    """name -> (body, headers): validly signed bodies that must be refused (4xx)."""
    note = zoe.note()
    foreign_id = {**note, "id": "http://127.0.0.9:1/activities/elsewhere"}
    foreign_note = zoe.note()
    foreign_note["object"]["attributedTo"] = "http://127.0.0.9:1/users/someone"
    raw = {
        "not JSON": "this is not json",
        "empty": "",
        "binary": "\x00\x01\x02\xff",
        "deep JSON": deep_json(10_000),
        "lone surrogate": json.dumps(zoe.note())[:-1] + ', "summary": "\\ud800"}',
        "a JSON list": "[1, 2, 3]",
        "no actor": json.dumps({k: v for k, v in note.items() if k != "actor"}),
        "actor of the wrong type": json.dumps({**note, "actor": {"id": 5}}),
        "huge number": json.dumps(note)[:-1] + ', "n": ' + "9" * 5000 + "}",
        "id on another host than the actor": json.dumps(foreign_id),
        "Note attributed to someone else": json.dumps(foreign_note),
    }
    cases = {name: zoe.signed(text) for name, text in raw.items()}
    big = json.dumps({**note, "padding": "x" * (3 << 20)})
    cases["3 MB body"] = zoe.signed(big)
    return cases


@pytest.fixture
def fuzzed(federated_site, bovine_peer):
    """A site of ours whose alice is followed by bovine's zoe and yan, and follows zoe: a
    post by zoe that got through would be in the database."""
    site = federated_site("127.0.0.2")
    peer = bovine_peer("127.0.0.5")
    actors = {name: peer.command("actor", name=name) for name in ("zoe", "yan")}
    follows = {name: follows_alice(site, peer, actor)[1] for name, actor in actors.items()}
    alice_follows(site, peer, actors["zoe"])
    return site, peer, actors, follows


def assert_nothing_changed(site, before: dict, statuses: dict) -> None:
    changes = changed_tables(before, database_rows(site))
    assert not changes, f"the database changed: {changes}\nstatuses: {statuses}"
    log = (site.data_dir / "web.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-5000:]


def test_forged_and_broken_signatures_are_refused(fuzzed):
    site, peer, actors, _follows = fuzzed
    alice = json.loads(peer.command("get", actor="zoe", url=actor_url(site, "alice"))["body"])
    zoe = Fuzzer(peer, actors["zoe"], alice["inbox"])
    yan = Fuzzer(peer, actors["yan"], alice["inbox"])
    cases = bad_signature_cases(zoe, yan, alice["endpoints"]["sharedInbox"])
    before = database_rows(site)
    statuses = {name: send(zoe.inbox, *case) for name, case in cases.items()}
    time.sleep(2)  # anything wrongly queued has had time to be applied
    assert statuses == dict.fromkeys(cases, 401)
    assert_nothing_changed(site, before, statuses)


def test_bad_bodies_are_refused(fuzzed):
    site, peer, actors, _follows = fuzzed
    alice = json.loads(peer.command("get", actor="zoe", url=actor_url(site, "alice"))["body"])
    zoe = Fuzzer(peer, actors["zoe"], alice["inbox"])
    cases = bad_body_cases(zoe)
    before = database_rows(site)
    statuses = {name: send(zoe.inbox, *case) for name, case in cases.items()}
    time.sleep(2)
    # What got in is the graver failure: it is checked first.
    assert_nothing_changed(site, before, statuses)
    assert {name: s for name, s in statuses.items() if not 400 <= s < 500} == {}, statuses
    assert statuses["3 MB body"] == 413


def test_replays_change_nothing(fuzzed):
    site, peer, actors, follows = fuzzed
    alice = json.loads(peer.command("get", actor="zoe", url=actor_url(site, "alice"))["body"])
    zoe = Fuzzer(peer, actors["zoe"], alice["inbox"])
    first = [e for e in peer.command("received") if e["method"] == "POST"]
    before = database_rows(site)
    statuses = {}
    # The Follow already applied, freshly signed, to the user's and to the shared inbox.
    for inbox in (alice["inbox"], alice["endpoints"]["sharedInbox"]):
        statuses[f"Follow again to {inbox}"] = send(inbox, *zoe.signed(follows["zoe"]))
    # The same id with other content.
    twisted = {**follows["zoe"], "object": actors["yan"]["id"]}
    statuses["same id, other object"] = send(zoe.inbox, *zoe.signed(twisted))
    time.sleep(2)
    assert {name: s for name, s in statuses.items() if s >= 500} == {}, statuses
    assert_nothing_changed(site, before, statuses)
    # And no second Accept went out.
    now = [e for e in peer.command("received") if e["method"] == "POST"]
    assert len(now) == len(first), now[len(first) :]


# --- SSRF: key ids and handles that point where our server must never go -------------------


def loopback_key_ids(port: int) -> dict:
    """Key ids (with their actor ids) on the canary listening at 127.0.0.1:`port`."""
    return {
        "plain http to loopback": f"http://127.0.0.1:{port}/users/x#main-key",
        "https to loopback": f"https://127.0.0.1:{port}/users/x#main-key",
        "a name for loopback": f"https://localhost:{port}/users/x#main-key",
        "loopback as an integer": f"https://2130706433:{port}/users/x#main-key",
        "loopback, short form": f"https://127.1:{port}/users/x#main-key",
        "userinfo before loopback": f"https://example.invalid@127.0.0.1:{port}/users/x#k",
    }


METADATA_KEY_IDS = {
    "cloud metadata": "https://169.254.169.254/latest/meta-data/iam#main-key",
    "cloud metadata over http": "http://169.254.169.254/latest/meta-data/iam#main-key",
}


def send_with_key_ids(fuzzer: Fuzzer, key_ids: dict) -> dict:
    """A new post signed by `fuzzer`'s actor but naming each key id (and its actor) in turn;
    the statuses by name."""
    statuses = {}
    for name, key_id in key_ids.items():
        owner = key_id.split("#", 1)[0]
        document = {**fuzzer.note(), "actor": owner}
        document["object"]["attributedTo"] = owner
        statuses[name] = send(fuzzer.inbox, *fuzzer.signed(document, key_id=key_id))
    return statuses


def test_key_ids_pointing_inward_are_never_fetched(federated_site, bovine_peer, canary):
    # As deployed: no private addresses, no plain http.
    site = federated_site("127.0.0.3", strict=True)
    peer = bovine_peer("127.0.0.5")
    fuzzer = Fuzzer(peer, peer.command("actor", name="mallory"), actor_inbox(site, "alice"))
    before = database_rows(site)
    statuses = send_with_key_ids(fuzzer, loopback_key_ids(canary.port))
    time.sleep(2)
    assert canary.hits == []
    # Only a server that kept away from the canary, and whose processes all run under
    # netguard, is sent key ids off this machine.
    assert not site.netguard_log.exists(), site.netguard_log.read_text()
    guarded = Path(f"{site.netguard_log}.guarded").read_text().split()
    assert {str(site.web.pid), *(str(c.pid) for c in site.consumers)} <= set(guarded)
    statuses |= send_with_key_ids(fuzzer, METADATA_KEY_IDS)
    time.sleep(2)
    assert not site.netguard_log.exists(), site.netguard_log.read_text()
    assert statuses == dict.fromkeys(statuses, 401)
    assert_nothing_changed(site, before, statuses)


def test_the_canary_is_reached_when_the_fence_is_lifted(our_site, remote_peer, canary):
    """The check above can fail: with private addresses allowed, the same key id is fetched."""
    mallory = remote_peer.command("actor", name="mallory")
    fuzzer = Fuzzer(remote_peer, mallory, actor_inbox(our_site, "alice"))
    key_ids = loopback_key_ids(canary.port)
    status = send_with_key_ids(fuzzer, {"plain http": key_ids["plain http to loopback"]})
    assert status == {"plain http": 401}  # the canary serves no key
    assert canary.hits, "the server never tried the key id it was given"


def test_search_never_looks_up_inward_handles(federated_site, canary):
    site = federated_site("127.0.0.3", strict=True)
    browser = Browser(site.url)
    browser.login("alice", PASSWORD)
    before = database_rows(site)
    for handle in (
        f"@x@127.0.0.1:{canary.port}",
        f"@x@localhost:{canary.port}",
        "@x@169.254.169.254",
        f"http://127.0.0.1:{canary.port}/users/x",
    ):
        status, _body, _headers = browser.get(f"/search?q={requests.utils.quote(handle)}")
        assert status == 200, handle
        if handle.startswith("@"):
            status, _body, _headers = browser.get(f"/user/{requests.utils.quote(handle[1:])}")
            assert status in (400, 404), (handle, status)
    assert canary.hits == []
    assert not site.netguard_log.exists(), site.netguard_log.read_text()
    # Sessions and rate-limit counters are the only rows a signed-in search may write.
    changes = changed_tables(before, database_rows(site))
    assert not {t for t in changes if "user" in t or "actor" in t}, changes


def actor_inbox(site, username: str) -> str:
    found = requests.get(
        f"{site.url}/.well-known/webfinger",
        params={"resource": f"acct:{username}@{site.env['SITE_URL'].split('://')[1]}"},
        timeout=30,
    ).json()
    href = next(link["href"] for link in found["links"] if link.get("rel") == "self")
    document = requests.get(href, headers={"Accept": ACTIVITY_JSON}, timeout=30)
    return document.json()["inbox"]


def test_a_blocked_domain_is_refused_before_any_key_fetch(federated_site, bovine_peer):
    site = federated_site("127.0.0.2", admins=("root",))
    blocked = bovine_peer("127.0.0.6")
    troll = blocked.command("actor", name="troll")
    root = Browser(site.url)
    root.login("root", PASSWORD)
    status, page = root.submit("/admin/domains/", {"domain": "127.0.0.6"}, token_from="/admin/")
    assert status == 200 and "127.0.0.6" in page.decode()
    inbox = actor_inbox(site, "alice")
    fuzzer = Fuzzer(blocked, troll, inbox)
    before = database_rows(site)
    statuses = {
        "Follow": send(inbox, *fuzzer.signed(activity("Follow", troll, actor_url(site, "alice")))),
        "Create": send(inbox, *fuzzer.signed(fuzzer.note("spam"))),
    }
    time.sleep(2)
    assert statuses == {"Follow": 403, "Create": 403}
    # Refused on the domain alone: the troll's key was never fetched.
    assert [e for e in blocked.command("received") if e["method"] == "GET"] == []
    assert_nothing_changed(site, before, statuses)
