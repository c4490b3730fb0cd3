"""The inbox's queue: what other servers POST is verified (federation_in.py), stored once by
its activity id and answered 202; the worker applies it later, in batches.

Applying in batches is what lets one consumer keep up with a busy inbox: a task per activity
cost a queue write in the web process and a queue read, a session and a commit in the
worker for every one of them, and each of those commits took SQLite's one write lock from
the inbox's own inserts. Now the inbox only stores the row and, unless a wake is already
pending, queues one `apply_received` task; that task claims received rows in batches
(`claimed_until`, a lease, so that several consumers share them and a killed one's rows come
back) and applies them one per transaction while the inbox is receiving, ten when it is quiet
(COMMIT_EVERY_RECEIVING, COMMIT_EVERY_QUIET).

Applying is idempotent (federation_in.apply). An activity that does not fit is marked failed;
one that meets an error of ours (the database, a bug) stays received and is tried again at
doubling ages from FEDERATION_INBOX_RETRY_SECONDS until it is two days old, when it is given
up. A sweep every minute, and each consumer as it starts, applies whatever is due.
"""

import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import abort, current_app, request
from flask.typing import ResponseReturnValue
from huey import crontab

import actors
import blocks
import delivery_store
import federation_in
import fedfetch
import fedsign
import inbox_guard
from database import _insert_unless_conflict, db, execute_dml, materialized, utcnow
from federation_in import InboxActivity
from worker import app_context, huey, on_consumer_start

log = logging.getLogger("huey.microblog")

# The largest inbox POST read (Mastodon's largest activities are a few kilobytes).
INBOX_MAX_BYTES = 256 * 1024
# Rows claimed at a time, and how long a claim lasts (a batch takes well under a second).
CLAIM_BATCH = 50
CLAIM_LEASE = timedelta(seconds=60)
# Rows applied per transaction. A writer holds SQLite's lock until it commits, and the
# inbox's inserts wait for it meanwhile: while the inbox is receiving (a row came in the
# last RECEIVING_WITHIN), one row per transaction keeps its answers fast. When it is quiet,
# ten per transaction cost 40 % less CPU per row than one: a backlog is caught up sooner.
COMMIT_EVERY_RECEIVING = 1
COMMIT_EVERY_QUIET = 10
RECEIVING_WITHIN = timedelta(seconds=1)
# A task applies for at most this long, then queues its successor: the queue's other tasks
# get their turn.
APPLY_MAX_SECONDS = 5.0
# The huey key that says an `apply_received` task is queued and has not started yet.
WAKE_KEY = "inbound:wake-queued"
# A wake older than this is queued again (its task may have been lost with its consumer).
WAKE_STALE_SECONDS = 5.0


# --- receiving --------------------------------------------------------------------------


def receive() -> ResponseReturnValue:
    """Answer an inbox POST: 202 once verified and stored, else a 4xx and nothing changed."""
    if (request.content_length or 0) > INBOX_MAX_BYTES:
        abort(413)
    body = request.get_data(cache=False)
    if len(body) > INBOX_MAX_BYTES:
        abort(413)
    headers = dict(request.headers)
    key_id = federation_in.key_id_of(headers)
    key_host = actors.host_of(key_id)
    if not key_host or blocks.domain_blocked(key_host):
        abort(403 if key_host else 401)
    answer_now = inbox_guard.screen(key_id, body)  # rate limits, unseen actors' Deletes
    if answer_now is not None:
        return answer_now
    if backlog_full():
        return _come_back_later()
    try:
        actor_url = federation_in.verified_key_owner("POST", _target(), headers, body)
    except fedsign.SignatureError as exc:
        abort(401, exc.reason)
    except fedfetch.FetchError as exc:
        abort(401, f"the signing key cannot be fetched: {exc.reason}")
    activity = federation_in.parse_activity(body)
    federation_in.check_actor(activity, actor_url)
    store(activity, actor_url)
    return "", 202


# How often a web process counts the backlog (counting is not free, and a request or a
# hundred more make no difference).
BACKLOG_COUNTED_EVERY = 0.2
# What a sender is asked to wait when the backlog is full.
RETRY_AFTER_SECONDS = 60


def backlog_full() -> bool:
    """Whether more activities wait than FEDERATION_INBOX_BACKLOG_MAX (the worker is seconds
    behind, or not running): counted at most every BACKLOG_COUNTED_EVERY per process."""
    seen = current_app.extensions.setdefault("inbox_backlog", {"at": None, "full": False})
    now = time.monotonic()
    if seen["at"] is None or now - seen["at"] >= BACKLOG_COUNTED_EVERY:
        limit = current_app.config["FEDERATION_INBOX_BACKLOG_MAX"]
        waiting = db.session.scalar(
            sa.select(sa.func.count()).select_from(
                sa.select(InboxActivity.id)
                .where(InboxActivity.state == "received")
                .limit(limit + 1)
                .subquery()
            )
        )
        seen.update(at=now, full=(waiting or 0) > limit)
    return bool(seen["full"])


def _come_back_later() -> ResponseReturnValue:
    return (
        "The worker is behind: try again later.\n",
        503,
        {"Retry-After": str(RETRY_AFTER_SECONDS), "Content-Type": "text/plain; charset=utf-8"},
    )


def _target() -> str:
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def store(activity: dict[str, Any], actor_url: str) -> None:
    """Keep the activity once by its id and have a worker apply it (a repeat is ignored)."""
    values = {
        "activity_id": activity["id"],
        "actor_url": actor_url,
        "body": json.dumps(activity),
        "state": "received",
        "received_at": utcnow(),
    }
    row_id = db.session.execute(_insert_unless_conflict(InboxActivity, values)).scalar()
    db.session.commit()
    if row_id is not None:
        wake()


def wake(*, always: bool = False) -> None:
    """Queue `apply_received` unless one is queued and not started yet (or `always`): that
    one will see every row committed before it starts (it clears the key before it claims)."""
    queued_at = huey.get(WAKE_KEY, peek=True)
    now = time.time()
    fresh = isinstance(queued_at, float) and now - queued_at < WAKE_STALE_SECONDS
    if fresh and not always:
        return
    huey.put(WAKE_KEY, now)
    apply_received()


# --- applying ---------------------------------------------------------------------------

# Held while this process applies: a second task here would only compete with the first for
# the GIL and the write lock (other consumers' tasks share the rows through their claims).
_applying = threading.Lock()


@huey.task(name="apply_received")
def apply_received() -> int:
    """Apply received activities until none is left, or for APPLY_MAX_SECONDS and then queue
    the next task; returns how many were applied or failed."""
    done = 0
    while _applying.acquire(blocking=False):
        try:
            with app_context():
                applied, finished = _apply_for_a_while()
        finally:
            _applying.release()
        done += applied
        if not finished:
            # The next task goes on after the queue's others had their turn. Always: a wake
            # queued meanwhile found the lock taken and has ended.
            wake(always=True)
            break
        # A wake queued while we held the lock found it taken and left its rows to us.
        if huey.get(WAKE_KEY, peek=True) is None:
            break
    return done


def _apply_for_a_while() -> tuple[int, bool]:
    """How many rows were applied, and whether none is left."""
    started, done = time.monotonic(), 0
    while time.monotonic() - started < APPLY_MAX_SECONDS:
        huey.delete(WAKE_KEY)
        claimed = claim(CLAIM_BATCH)
        if not claimed:
            return done, True
        per_transaction = COMMIT_EVERY_RECEIVING if receiving() else COMMIT_EVERY_QUIET
        for first in range(0, len(claimed), per_transaction):
            apply_rows(claimed[first : first + per_transaction])
        done += len(claimed)
    return done, False


def receiving() -> bool:
    """Whether the inbox took an activity within the last RECEIVING_WITHIN."""
    newest = db.session.scalar(sa.select(sa.func.max(InboxActivity.received_at)))
    return newest is not None and utcnow() - newest < RECEIVING_WITHIN


def claim(limit: int) -> list[int]:
    """Take up to `limit` received rows that no worker holds, oldest first; commits."""
    now = utcnow()
    chosen = materialized(
        sa.select(InboxActivity.id)
        .where(_claimable(now))
        .order_by(InboxActivity.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=InboxActivity)
    )
    taken = db.session.scalars(
        sa.update(InboxActivity)
        .where(InboxActivity.id.in_(sa.select(chosen.c.id)), _claimable(now))
        .values(claimed_until=now + CLAIM_LEASE)
        .returning(InboxActivity.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return sorted(taken)


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        InboxActivity.state == "received",
        sa.or_(InboxActivity.claimed_until.is_(None), InboxActivity.claimed_until < now),
    )


def apply_rows(row_ids: list[int]) -> None:
    """Apply claimed rows in one transaction; when one of them raises, the others are
    applied again one per transaction, so that only that one fails."""
    try:
        rows = db.session.scalars(
            sa.select(InboxActivity).where(InboxActivity.id.in_(row_ids)).order_by(InboxActivity.id)
        ).all()
        senders = _actors({row.actor_url for row in rows})
        for row in rows:
            _apply(row, senders.get(row.actor_url))
        db.session.commit()
    except Exception:
        db.session.rollback()
        for row_id in row_ids:
            _apply_alone(row_id)


def _actors(urls: set[str]) -> dict[str, actors.RemoteActor]:
    """The remote actors of these URLs, with their accounts (every handler reads both)."""
    found = db.session.scalars(
        sa.select(actors.RemoteActor)
        .where(actors.RemoteActor.actor_url.in_(urls))
        .options(so.joinedload(actors.RemoteActor.user))
    )
    return {remote.actor_url: remote for remote in found}


def _apply(row: InboxActivity, remote: actors.RemoteActor | None) -> None:
    if remote is None:
        raise ValueError("its actor is gone")
    federation_in.apply(json.loads(row.body), remote.user)
    row.state, row.claimed_until = "applied", None


def _apply_alone(row_id: int) -> None:
    try:
        row = db.session.get_one(InboxActivity, row_id)
        _apply(row, _actors({row.actor_url}).get(row.actor_url))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # What another server sent does not fit: recorded, not retried.
        db.session.rollback()
        error = f"{type(exc).__name__}: {exc}"[:1000]
        _set_state(row_id, state="failed", error=error)
        log.info("Inbox activity %s not applied: %s", row_id, error)
    except Exception:
        log.exception("Inbox activity %s not applied; it will be tried again", row_id)
        db.session.rollback()
        row = db.session.get_one(InboxActivity, row_id)
        first = current_app.config["FEDERATION_INBOX_RETRY_SECONDS"]
        _set_state(row_id, claimed_until=next_try(row.received_at, utcnow(), first))
    db.session.commit()


def _set_state(row_id: int, **values: Any) -> None:
    execute_dml(sa.update(InboxActivity).where(InboxActivity.id == row_id).values(**values))


def next_try(received_at: datetime, now: datetime, first: float) -> datetime:
    """When an activity that met an error is tried again: at the first of the ages first,
    2×first, 4×first, … that is still ahead."""
    age = (now - received_at).total_seconds()
    step = first
    while step <= age:
        step *= 2
    return received_at + timedelta(seconds=step)


@huey.task(retries=2, retry_delay=30, name="apply_inbox_activity")
def apply_inbox_activity(row_id: int) -> str:
    """Apply one stored activity (what the inbox queued before it queued batches: such tasks
    may still wait in a queue after an upgrade); its state says how it went."""
    with app_context():
        row = db.session.get(InboxActivity, row_id)
        if row is None or row.state != "received":
            return "skipped"
        _apply_alone(row_id)
        return db.session.get_one(InboxActivity, row_id).state


# --- the sweep, and what the pages show ----------------------------------------------------


def give_up_old() -> int:
    """Mark activities received over two days ago and never applied as failed."""
    too_old = utcnow() - timedelta(seconds=current_app.config["FEDERATION_RETRY_FOR_SECONDS"])
    return execute_dml(
        sa.update(InboxActivity)
        .where(InboxActivity.state == "received", InboxActivity.received_at < too_old)
        .values(state="failed", error="not applied within two days")
    ).rowcount


@huey.periodic_task(crontab(minute="*"), name="retry_unapplied")
def retry_unapplied() -> int:
    """Give up what is too old, then apply what is due: rows a killed worker held, rows
    waiting for their next try, rows whose wake was lost."""
    with app_context():
        give_up_old()
        db.session.commit()
        due = db.session.scalar(sa.select(InboxActivity.id).where(_claimable(utcnow())).limit(1))
    return apply_received.call_local() if due is not None else 0


@huey.task(name="retry_all_unapplied")
def apply_left_over() -> int:
    """What a consumer runs as it starts: its predecessor's rows at once, not at the next
    minute (their claims lapse when their lease ends; rows never claimed are due now)."""
    return retry_unapplied.call_local()


on_consumer_start(apply_left_over)


def federation_numbers() -> dict[str, Any]:
    """The queues /admin/federation, /admin/jobs and `flask federation status` show:
    `outbound` (delivery_store.backlog) and `inbound` (backlog below)."""
    return {"outbound": delivery_store.backlog(), "inbound": backlog()}


def backlog() -> dict[str, Any]:
    """Received activities waiting to be applied, and when the oldest arrived."""
    count, oldest = db.session.execute(
        sa.select(sa.func.count(InboxActivity.id), sa.func.min(InboxActivity.received_at)).where(
            InboxActivity.state == "received"
        )
    ).one()
    return {"pending": count, "oldest": oldest}


def backlog_problem(max_age: float) -> str | None:
    """Why /readyz should report the inbox: received activities not applied for longer than
    `max_age` seconds (the workers are behind, or none runs); None when they keep up."""
    inbound = backlog()
    waited = delivery_store.seconds_between(inbound["oldest"], utcnow())
    if waited is None or waited <= max_age:
        return None
    return f"{inbound['pending']} received activities wait, the oldest for {waited / 60:.0f} min"
