"""The public keys that remote actors signed requests to us with lately, kept by each web
process for KEEP_SECONDS: an inbox POST from a sender seen lately verifies with a key from
memory instead of reading its actor from the database and parsing its PEM each time.

A key kept here that no longer verifies (the actor rotated it) is dropped, and the request
is verified again as if it were not kept: with the database's key, then with one fetched
anew (federation_in.verified_key_owner). An actor forgotten here meanwhile may have an
activity accepted for up to KEEP_SECONDS; the worker then finds no actor and records it
as not applied.
"""

import threading
import time
from collections import OrderedDict
from typing import NamedTuple, cast

from flask import current_app

KEEP_SECONDS = 300.0
# Keys kept per process, the least recently used dropped first (a parsed RSA key and its
# PEM take about 2 KiB).
MAX_KEYS = 2000


class KnownKey(NamedTuple):
    pem: str
    actor_url: str
    expires: float


class KnownKeys:
    """Key id → its PEM and its actor's URL, for KEEP_SECONDS each, thread-safe."""

    def __init__(self) -> None:
        self.keys: OrderedDict[str, KnownKey] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key_id: str) -> KnownKey | None:
        with self.lock:
            known = self.keys.get(key_id)
            if known is None:
                return None
            if known.expires <= time.monotonic():
                del self.keys[key_id]
                return None
            self.keys.move_to_end(key_id)
            return known

    def put(self, key_id: str, pem: str, actor_url: str) -> None:
        with self.lock:
            self.keys[key_id] = KnownKey(pem, actor_url, time.monotonic() + KEEP_SECONDS)
            self.keys.move_to_end(key_id)
            while len(self.keys) > MAX_KEYS:
                self.keys.popitem(last=False)

    def drop(self, key_id: str) -> None:
        with self.lock:
            self.keys.pop(key_id, None)


def known_keys() -> KnownKeys:
    """This app's keys (each app of a process keeps its own: tests make many)."""
    return cast(KnownKeys, current_app.extensions.setdefault("known_keys", KnownKeys()))
