"""fediverse-pasture's verify_actor, a conformance checker nobody here wrote, on our actors.

Pasture (in a venv of its own) serves six test actors on 127.0.0.4 and, for each, fetches our
actor and posts to its inbox: alice and dean unsigned, bob and emily signed, claire and frank
signed and serving their keys only to signed fetches (so our key fetch must be signed, and
our instance actor's key must verify at pasture); dean, emily and frank have no WebFinger
name. Then it checks that WebFinger maps our actor's name back to its id.
"""

import pytest

from tests.federation_clients import PastureServer, actor_url, handle
from tests.live import free_port

pytestmark = pytest.mark.consumer

# Pasture's own verdict of a well-behaved server: an unsigned POST is refused, everything
# signed gets through, every actor is readable.
EXPECTED = {
    "alice": {"get_actor": True, "post_inbox": False},
    "bob": {"get_actor": True, "post_inbox": True},
    "claire": {"get_actor": True, "post_inbox": True},
    "dean": {"get_actor": True, "post_inbox": False},
    "emily": {"get_actor": True, "post_inbox": True},
    "frank": {"get_actor": True, "post_inbox": True},
}


@pytest.fixture
def pasture(tmp_path):
    server = PastureServer("127.0.0.4", free_port(), tmp_path)
    yield server
    server.stop()


@pytest.fixture
def site(our_site):
    return our_site


def verdict(pasture, actor_uri) -> dict:
    found = pasture.verify(actor_uri)
    return {"result": found["result"], "messages": found["messages"]}


@pytest.mark.parametrize("by", ["actor id", "acct URI"])
def test_pasture_verifies_our_actor(site, pasture, by):
    actor_uri = actor_url(site, "alice") if by == "actor id" else f"acct:{handle(site, 'alice')}"
    found = verdict(pasture, actor_uri)
    result = found["result"]
    assert result.pop("webfinger") is True, found["messages"]
    assert result == EXPECTED, found["messages"]


def test_pasture_with_authorized_fetch(federated_site, pasture):
    """With FEDERATION_AUTHORIZED_FETCH only signed fetches read the actor."""
    site = federated_site("127.0.0.2", FEDERATION_AUTHORIZED_FETCH="on")
    found = verdict(pasture, actor_url(site, "alice"))
    result = found["result"]
    # Its WebFinger check fetches our actor signed, as its own application actor.
    assert result.pop("webfinger") is True, found["messages"]
    unsigned = {"get_actor": False, "post_inbox": False}
    assert result == {**EXPECTED, "alice": unsigned, "dean": unsigned}, found["messages"]
