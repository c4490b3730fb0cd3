"""What an inbox POST meets before its signature is verified (the costly part, which may
fetch the signer's key from its server): a rate limit per sending server, and the drop of a
Delete from an actor we have never seen, answered without fetching anything.

A server that deletes an account sends the Delete to every server it ever federated with;
most have never seen the actor, and verifying would make each of them fetch a key that is
gone. Dropping those unseen is what Mastodon does too: there is nothing of theirs to delete.
"""

import json
import logging

from flask.typing import ResponseReturnValue

import actors
import ratelimit

log = logging.getLogger("microblog")


def screen(key_id: str, body: bytes) -> ResponseReturnValue | None:
    """The answer to give at once (429, or 202 for an unseen actor's Delete), or None to
    go on verifying."""
    wait = ratelimit.inbox(actors.host_of(key_id))
    if wait:
        return "too many activities from your server", 429, {"Retry-After": str(wait)}
    if is_delete_from_stranger(key_id, body):
        log.debug("Dropped a Delete from an unknown actor (key %s)", key_id[:200])
        return "", 202
    return None


def is_delete_from_stranger(key_id: str, body: bytes) -> bool:
    """A Delete whose signing key and actor are both unknown here."""
    if b'"Delete"' not in body:  # most activities: no parsing at all
        return False
    try:
        activity = json.loads(body)
    except (ValueError, RecursionError):
        return False  # the normal path says what is wrong with it
    if not isinstance(activity, dict) or activity.get("type") != "Delete":
        return False
    actor = activity.get("actor")
    actor_url = actor.get("id") if isinstance(actor, dict) else actor
    if actors.remote_by_key_id(key_id) is not None:
        return False
    return not (isinstance(actor_url, str) and actors.remote_by_actor_url(actor_url))
