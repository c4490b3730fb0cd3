"""A small rate limiter shared by every web process.

State lives in Redis when REDIS_URL is set, otherwise in the app database (the
`rate_limit_hit` table), never in process memory: gunicorn runs several workers
and each must see the others' counts.
"""

import math
import time

import redis
import sqlalchemy as sa
from flask import current_app

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
