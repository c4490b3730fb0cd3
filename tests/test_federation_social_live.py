"""Two instances of ours over real HTTP (each a gunicorn and a huey_consumer on its own
loopback address): private messages both ways, a mention of someone who does not follow
the author, and a block that stops what follows."""

import urllib.parse

from tests import test_federation_live
from tests.conftest import PASSWORD
from tests.live import Browser, wait_for
from tests.test_federation_live import logs

two_sites = test_federation_live.two_sites


def host(site) -> str:
    return urllib.parse.urlsplit(site.url).netloc


def shows(browser, path, text) -> bool:
    return text.encode() in browser.get(path)[1]


def test_messages_mentions_and_blocks_across_two_instances(two_sites):
    a, b = two_sites
    alice, bob = Browser(a.url), Browser(b.url)
    alice.login("alice", PASSWORD)
    bob.login("bob", PASSWORD)
    bob_there, alice_there = f"bob@{host(b)}", f"alice@{host(a)}"

    # alice writes to bob, whom A has never seen: found by WebFinger, delivered as a direct note.
    path = f"/send_message/{bob_there}"
    status, _ = alice.submit(path, {"message": "Psst, bob: a secret."}, token_from=path)
    assert status == 200, logs(a, b)
    try:
        wait_for(lambda: shows(bob, "/messages", "Psst, bob: a secret."), timeout=30, what="B")
    except AssertionError:
        raise AssertionError(logs(a, b)) from None
    assert not shows(bob, "/index", "a secret") and not shows(bob, "/explore", "a secret")

    # bob answers from B; it reaches alice's messages on A.
    path = f"/send_message/{alice_there}"
    status, _ = bob.submit(path, {"message": "Got it, alice."}, token_from=path)
    assert status == 200
    wait_for(lambda: shows(alice, "/messages", "Got it, alice."), timeout=30, what="A")

    # alice mentions bob in a public post; bob does not follow her, yet he is told.
    status, _ = alice.submit("/index", {"post": f"Hello @{bob_there}!"}, token_from="/index")
    assert status == 200
    try:
        wait_for(lambda: shows(bob, "/mentions", "Hello"), timeout=30, what="the mention on B")
    except AssertionError:
        raise AssertionError(logs(a, b)) from None
    assert b'id="mention_count" class="badge rounded-pill text-bg-danger"' in bob.get("/index")[1]

    # bob blocks alice: A is told (Block), and what she writes next never reaches him.
    status, _ = bob.submit(f"/block/{alice_there}", token_from=f"/user/{alice_there}")
    assert status == 200
    (alice_id,) = a.query("SELECT id FROM user WHERE username = 'alice'")[0]
    wait_for(
        lambda: (
            a.query("SELECT count(*) FROM inbox_activities WHERE body LIKE '%\"Block\"%'") == [(1,)]
        ),
        timeout=30,
        what="the Block to reach A",
    )
    path = f"/send_message/{bob_there}"
    alice.submit(path, {"message": "Are you there?"}, token_from=path)
    wait_for(
        lambda: (
            b.query("SELECT state FROM inbox_activities ORDER BY id DESC LIMIT 1") == [("applied",)]
            and b.query("SELECT count(*) FROM inbox_activities") == [(3,)]
        ),
        timeout=30,
        what="B to apply alice's last note",
    )
    assert not shows(bob, "/messages", "Are you there?")
    assert alice_id
