"""A small rate limiter shared by every web process.

State lives in Redis when REDIS_URL is set, otherwise in the app database (the
`rate_limit_hit` table), never in process memory: gunicorn runs several workers
and each must see the others' counts.
"""

import math
import time

import redis
import sqlalchemy as sa
from flask import current_app, request
from flask_babel import ngettext

from models import RateLimitHit, db


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
    db.session.execute(sa.delete(RateLimitHit).where(RateLimitHit.at <= now - window))
    count, oldest = db.session.execute(
        sa.select(sa.func.count(), sa.func.min(RateLimitHit.at)).where(RateLimitHit.key == key)
    ).one()
    if count >= limit:
        db.session.commit()
        return max(1, math.ceil(oldest + window - now))
    db.session.add(RateLimitHit(key=key, at=now))
    db.session.commit()
    return 0


def _redis_hit(redis_url: str, key: str, limit: int, window: int) -> int:
    """A fixed window: one counter per key and window, expiring with it."""
    client = _redis_client(redis_url)
    now = clock()
    window_key = f"{current_app.config['RATE_LIMIT_PREFIX']}{key}:{int(now // window)}"
    retry_after = max(1, math.ceil(window - now % window))
    if int(client.get(window_key) or 0) >= limit:
        return retry_after
    with client.pipeline() as pipe:
        pipe.incr(window_key)
        pipe.expire(window_key, window + 1)
        count, _ = pipe.execute()
    # Two processes may both have passed the check above; the counter settles it.
    return retry_after if count > limit else 0


def _redis_client(redis_url: str):
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


def translation(user_id: int) -> int:
    """A post translated for this user: per user (whatever their address) and per address."""
    return check(
        *_limits(
            "TRANSLATE_LIMIT",
            (f"translate:user:{user_id}", "PER_USER"),
            (per_client("translate"), "PER_IP"),
        )
    )
