"""The received side of the worker's federation work: activities stored by the inbox that
are not applied yet. `retry_unapplied` queues them again — every one when a consumer starts
(its predecessor may have died applying them), and then each at doubling ages from
FEDERATION_INBOX_RETRY_SECONDS — until they are two days old, when they are given up.

Applying is idempotent (federation_in.apply), so a repeat does no harm."""

import math
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from huey import crontab

import delivery_store
from database import db, execute_dml, utcnow
from federation_in import InboxActivity, apply_inbox_activity
from worker import app_context, huey, on_consumer_start

# Rows looked at per sweep (the oldest first).
SWEEP_MAX = 1000
# The sweep runs every minute: a row is due when its age has just crossed a step.
SWEEP_SECONDS = 60.0


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


def retry_due(age: float, first: float, every: float = SWEEP_SECONDS) -> bool:
    """Whether an activity `age` seconds old reached one of the retry ages (first, 2×first,
    4×first, …) within the last `every` seconds."""
    if age < first:
        return False
    step = first * 2 ** math.floor(math.log2(age / first))
    return age - step < every


def give_up_old() -> int:
    """Mark activities received over two days ago and never applied as failed."""
    too_old = utcnow() - timedelta(seconds=current_app.config["FEDERATION_RETRY_FOR_SECONDS"])
    return execute_dml(
        sa.update(InboxActivity)
        .where(InboxActivity.state == "received", InboxActivity.received_at < too_old)
        .values(state="failed", error="not applied within two days")
    ).rowcount


def unapplied(all_of_them: bool) -> list[int]:
    """Ids of received activities to queue again: all those older than the first retry age,
    or only those whose age just reached a retry step."""
    first = current_app.config["FEDERATION_INBOX_RETRY_SECONDS"]
    now = utcnow()
    rows = db.session.execute(
        sa.select(InboxActivity.id, InboxActivity.received_at)
        .where(
            InboxActivity.state == "received",
            InboxActivity.received_at < now - timedelta(seconds=first),
        )
        .order_by(InboxActivity.received_at)
        .limit(SWEEP_MAX)
    ).all()
    return [
        row.id
        for row in rows
        if all_of_them or retry_due((now - row.received_at).total_seconds(), first)
    ]


def _retry(all_of_them: bool) -> int:
    with app_context():
        give_up_old()
        db.session.commit()
        ids = unapplied(all_of_them)
    for row_id in ids:
        apply_inbox_activity(row_id)
    return len(ids)


@huey.periodic_task(crontab(minute="*"), name="retry_unapplied")
def retry_unapplied() -> int:
    return _retry(all_of_them=False)


@huey.task(name="retry_all_unapplied")
def retry_all_unapplied() -> int:
    return _retry(all_of_them=True)


on_consumer_start(retry_all_unapplied)
