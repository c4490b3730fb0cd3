"""A small rate limiter shared by every web process.

State lives in Redis when REDIS_URL is set, otherwise in the app database (the
`rate_limit_hit` table), never in process memory: gunicorn runs several workers
and each must see the others' counts. Both stores count the same way, a sliding window
over the attempts themselves: a limit of 5 per 300 s means no more than 5 counted attempts
in any 300 seconds. (A fixed window, cheaper in Redis, lets twice the limit through around
a window's edge, so one setting would mean two limits.)
"""

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import cast

import redis
import sqlalchemy as sa
from flask import current_app, request
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from database import db
from models import RateLimitHit


def hit(key: str, limit: int, window: int) -> int:
    """Count an attempt for `key`; 0 if allowed, else the seconds to wait.

    Refused attempts are not counted, so a blocked client is free again once its
    window has passed, however often it knocked meanwhile.
    """
    redis_url = current_app.config.get("REDIS_URL")
    if redis_url:
        return _redis_hit(redis_url, key, limit, window)
    return _database_hit(key, limit, window)


def client_address() -> str:
    """The client's address: the socket's, or what TRUSTED_PROXIES lets ProxyFix believe."""
    return request.remote_addr or "unknown"


def per_client(name: str, subject: str | None = None) -> str:
    """The key of `name`'s bucket for this client address (and `subject`, such as a
    username): a flood from one address never fills another address's bucket."""
    key = f"{name}:ip:{client_address()}"
    if subject is not None:
        key += f":{subject.strip().lower()[:120]}"
    return key


def check(*limits: tuple[str, int, int]) -> int:
    """Count an attempt against each (key, limit, window); 0 if all allow it, else the
    seconds to wait for the first that refuses."""
    for key, limit, window in limits:
        retry_after = hit(key, limit, window)
        if retry_after:
            return retry_after
    return 0


# What a refusal says, per kind of attempt, on the pages and in the API alike (whole
# sentences: a translation must agree in gender).
TOO_MANY = {
    "sign-in attempts": _l(
        "Too many sign-in attempts from your address. Please wait %(wait)s and try again."
    ),
    "new accounts": _l(
        "Too many new accounts from your address. Please wait %(wait)s and try again."
    ),
    "password reset requests": _l(
        "Too many password reset requests from your address. Please wait %(wait)s and try again."
    ),
    "password attempts": _l(
        "Too many password attempts from your address. Please wait %(wait)s and try again."
    ),
    "token requests": _l(
        "Too many token requests from your address. Please wait %(wait)s and try again."
    ),
    "translations": _l("Too many translations. Please wait %(wait)s and try again."),
    "account lookups": _l(
        "Too many searches for accounts on other servers. Please wait %(wait)s and try again."
    ),
    "app registrations": _l(
        "Too many new apps from your address. Please wait %(wait)s and try again."
    ),
}


def refusal(what: str, retry_after: int) -> str:
    """The sentence that refuses another of `what` (a key of TOO_MANY) for `retry_after` s."""
    return str(TOO_MANY[what]) % {"wait": in_words(retry_after)}


def in_words(seconds: int) -> str:
    """ "30 seconds", "5 minutes": how long to wait, for a person."""
    if seconds < 90:
        return ngettext("%(num)d second", "%(num)d seconds", seconds)
    return ngettext("%(num)d minute", "%(num)d minutes", math.ceil(seconds / 60))


def clock() -> float:
    """The clock, in Unix seconds (a seam for tests)."""
    return time.time()


def _database_hit(key: str, limit: int, window: int) -> int:
    """A sliding window: one row per counted attempt, old rows pruned as we go."""
    now = clock()
    _prune(key, now, window)
    count, oldest = db.session.execute(
        sa.select(sa.func.count(), sa.func.min(RateLimitHit.at)).where(
            RateLimitHit.key == key, RateLimitHit.at > now - window
        )
    ).one()
    if count >= limit:
        db.session.commit()
        return _wait(oldest, window, now)
    db.session.add(RateLimitHit(key=key, at=now))
    db.session.commit()
    return 0


def _prune(key: str, now: float, window: int) -> None:
    """Delete the rows no limit counts any more: those of `key`'s kind of attempt (the part
    of the key before its first colon, "inbox", "sign-in"…) older than its window, and any
    older than the longest window of all. Not every row older than this window: a limit of
    5 minutes must not delete what an hourly one still counts."""
    kind = key.partition(":")[0]
    own = (RateLimitHit.key >= f"{kind}:") & (RateLimitHit.key < f"{kind};")  # ";" follows ":"
    db.session.execute(sa.delete(RateLimitHit).where(own, RateLimitHit.at <= now - window))
    longest = max(
        [window]
        + [value for name, value in current_app.config.items() if name.endswith("_LIMIT_WINDOW")]
    )
    db.session.execute(sa.delete(RateLimitHit).where(RateLimitHit.at <= now - longest))


# The same sliding window as the database's, as one atomic step in Redis: a sorted set of
# the counted attempts' times, pruned, counted and added to without a race between processes.
# KEYS[1] the key; ARGV: now, window, limit, a unique member. Returns nil when allowed, else
# the oldest counted attempt's time (as a string: Lua numbers would be cut to integers).
_SLIDING_WINDOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return nil
"""


def _redis_hit(redis_url: str, key: str, limit: int, window: int) -> int:
    """The database's sliding window, kept in a Redis sorted set per key."""
    client = _redis_client(redis_url)
    now = clock()
    # redis-py types eval() for its blocking and asyncio clients at once (`Awaitable[str] |
    # str`); this blocking client answers with what the script returns: bytes, or None.
    # Its arguments are typed str (redis sends an int as its digits all the same).
    oldest = cast(
        "bytes | None",
        client.eval(
            _SLIDING_WINDOW,
            1,
            f"{current_app.config['RATE_LIMIT_PREFIX']}{key}",
            repr(now),
            str(window),
            str(limit),
            f"{now!r}:{uuid.uuid4().hex}",
        ),
    )
    return 0 if oldest is None else _wait(float(oldest), window, now)


def _wait(oldest: float, window: int, now: float) -> int:
    """Whole seconds until the oldest counted attempt leaves the window (at least 1)."""
    return max(1, math.ceil(oldest + window - now))


def _redis_client(redis_url: str) -> redis.Redis:
    """One connection pool per app and URL."""
    clients = current_app.extensions.setdefault("ratelimit_redis", {})
    if redis_url not in clients:
        clients[redis_url] = redis.Redis.from_url(redis_url)
    return clients[redis_url]


# --- what is limited, and how much (the settings are in config.py) -----------------------


def _limits(prefix: str, *pairs: tuple[str, str]) -> list[tuple[str, int, int]]:
    config = current_app.config
    window = config[f"{prefix}_WINDOW"]
    return [(key, config[f"{prefix}_{setting}"], window) for key, setting in pairs]


def sign_in(username: str) -> int:
    """A password check for `username` (web sign-in, or a current password re-typed)."""
    return check(
        *_limits(
            "SIGN_IN_LIMIT",
            (per_client("sign-in"), "PER_IP"),
            (per_client("sign-in", username), "PER_USER"),
        )
    )


def api_token(username: str) -> int:
    """A token request (HTTP Basic) for `username`."""
    return check(
        *_limits(
            "API_TOKEN_LIMIT",
            (per_client("api-token"), "PER_IP"),
            (per_client("api-token", username), "PER_USER"),
        )
    )


def reset_mail(email: str) -> int:
    """A password-reset request for `email`: per client, and per address whoever asks."""
    return check(
        *_limits(
            "RESET_LIMIT",
            (per_client("reset"), "PER_IP"),
            (f"reset:address:{email.strip().lower()[:120]}", "PER_ADDRESS"),
        )
    )


def registration() -> int:
    """A new account from this client address."""
    return check(*_limits("REGISTER_LIMIT", (per_client("register"), "PER_IP")))


def app_registration() -> int:
    """A new Mastodon app (an OAuth client) from this client address."""
    return check(*_limits("APP_REGISTRATION_LIMIT", (per_client("app"), "PER_IP")))


def translation(user_id: int) -> int:
    """A post translated for this user: per user (whatever their address) and per address."""
    return check(
        *_limits(
            "TRANSLATE_LIMIT",
            (f"translate:user:{user_id}", "PER_USER"),
            (per_client("translate"), "PER_IP"),
        )
    )


def remote_lookup(user_id: int) -> int:
    """A search that asks another server for an account (each one costs it and us requests)."""
    return check(*_limits("FEDERATION_LOOKUP_LIMIT", (f"remote-lookup:user:{user_id}", "PER_USER")))


def inbox(host: str) -> int:
    """An activity posted to an inbox, signed with a key of `host`, from this address (a
    forged key id from elsewhere fills only its own sender's bucket). Counted in batches
    (below) where the database keeps the counts."""
    ((key, limit, window),) = _limits(
        "FEDERATION_INBOX_LIMIT", (per_client("inbox", host or "none"), "PER_HOST")
    )
    redis_url = current_app.config.get("REDIS_URL")
    if redis_url:
        return _redis_hit(redis_url, key, limit, window)
    counter = current_app.extensions.setdefault("ratelimit_batches", BatchedCounter())
    return cast(BatchedCounter, counter).hit(key, limit, window)


# --- a limit hit often, counted in batches ------------------------------------------------
#
# Servers deliver to the inbox by the thousand, and a row written and committed per
# activity cost more than the rest of the request. So each process keeps the inbox attempts
# it allowed in memory and writes them (one row each, as ever) at most every
# BATCH_SECONDS, or once a key has a batch of them (a twentieth of its limit), reading the
# keys' shared counts as it writes. It allows an attempt without the database only while
# the last count it read plus its own unwritten attempts is under half the limit; nearer
# the limit each attempt is counted in the database as the other limits count, and a
# refusal is remembered until the oldest counted attempt leaves the window (the count
# cannot fall before then). What the shortcut costs: the other processes' unwritten
# attempts, under a batch each, are not seen, so a sender may get a twentieth of its limit
# per other process beyond it. Small limits (under 40) are always counted exactly.

BATCH_SECONDS = 1.0
BATCH_PER_LIMIT = 20
# Keys remembered per process before those with nothing unwritten are forgotten.
MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    """One process's view of one key."""

    unwritten: list[float] = field(default_factory=list)  # times of attempts allowed here
    counted: int = 0  # the key's rows in the database when last read
    read_at: float = -math.inf
    refused_until: float = -math.inf

    def may_skip(self, limit: int, now: float) -> bool:
        """Whether this attempt may be allowed without asking the database."""
        batch = limit // BATCH_PER_LIMIT
        return (
            batch >= 2
            and now - self.read_at < BATCH_SECONDS
            and self.counted + len(self.unwritten) + 1 < limit // 2
        )


class BatchedCounter:
    """The sliding window of `_database_hit`, with the writes of one process batched."""

    def __init__(self) -> None:
        self.buckets: dict[str, _Bucket] = {}
        self.lock = threading.Lock()
        self.written_at = -math.inf

    def hit(self, key: str, limit: int, window: int) -> int:
        """0 if the attempt is allowed, else the seconds to wait (as `hit`)."""
        now = clock()
        with self.lock:
            bucket = self._bucket(key)
            if now < bucket.refused_until:
                return max(1, math.ceil(bucket.refused_until - now))
            exact = not bucket.may_skip(limit, now)
            if not exact:
                bucket.unwritten.append(now)
                batch = limit // BATCH_PER_LIMIT
                if now - self.written_at < BATCH_SECONDS and len(bucket.unwritten) < batch:
                    return 0
            self.written_at = now
            unwritten = [(k, at) for k, b in self.buckets.items() for at in b.unwritten]
            for each in self.buckets.values():
                each.unwritten = []
        counts, wait = _write_batch(unwritten, key if exact else None, limit, window, now)
        with self.lock:
            for name, count in counts.items():
                read = self._bucket(name)
                read.counted, read.read_at = count, now
            if wait:
                bucket.refused_until = now + wait
        return wait

    def _bucket(self, key: str) -> _Bucket:
        if key not in self.buckets and len(self.buckets) >= MAX_BUCKETS:
            self.buckets = {k: b for k, b in self.buckets.items() if b.unwritten}
        return self.buckets.setdefault(key, _Bucket())


def _write_batch(
    unwritten: list[tuple[str, float]], exact_key: str | None, limit: int, window: int, now: float
) -> tuple[dict[str, int], int]:
    """Write the attempts allowed without the database, and count `exact_key`'s attempt as
    `_database_hit` does, in one transaction; the counts of the keys written, and the
    seconds `exact_key` must wait (0 when allowed)."""
    # The DELETE comes first: on SQLite it takes the write lock, so that no other process
    # adds to a count between our reading it and our adding to it. (It may delete nothing;
    # SQLite takes the lock all the same.)
    _prune(exact_key or unwritten[0][0], now, window)
    if unwritten:
        db.session.execute(sa.insert(RateLimitHit), [{"key": k, "at": at} for k, at in unwritten])
    keys = {k for k, _at in unwritten} | ({exact_key} if exact_key else set())
    rows = db.session.execute(
        sa.select(RateLimitHit.key, sa.func.count(), sa.func.min(RateLimitHit.at))
        .where(RateLimitHit.key.in_(keys), RateLimitHit.at > now - window)
        .group_by(RateLimitHit.key)
    ).all()
    counts = {key: count for key, count, _oldest in rows}
    wait = 0
    if exact_key is not None:
        oldest = next((first for key, _count, first in rows if key == exact_key), None)
        if counts.get(exact_key, 0) >= limit:
            wait = _wait(cast(float, oldest), window, now)
        else:
            db.session.add(RateLimitHit(key=exact_key, at=now))
            counts[exact_key] = counts.get(exact_key, 0) + 1
    db.session.commit()
    return counts, wait
