"""Outgoing deliveries as the database keeps them: each activity once (`OutgoingActivity`),
one `Delivery` row per target inbox until it is delivered or given up, and what we know of
each server (`FederationHost`): its failures, its pause (the circuit breaker) and its counts.

A delivery row exists only while there is work to do: a delivered or refused one is deleted
at once and counted on its host, so the table is the queue and its size the backlog.

Consumers claim rows with one UPDATE (a compare-and-set over a sub-select; on PostgreSQL
with FOR UPDATE SKIP LOCKED, so that several consumers take disjoint rows without waiting
on each other). A claim is a lease: a consumer that dies leaves rows that any other may
take once the lease passes, or at once when the dead consumer is known to be gone.
"""

import math
import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app

from database import Model, db, execute_dml, materialized, utcnow
from jobs import CONSUMER_ID_MAX

HOST_MAX = 255
INBOX_MAX = 2048
ERROR_MAX = 300


class OutgoingActivity(Model):
    """An activity to send, stored once however many inboxes it goes to."""

    __tablename__ = "outgoing_activity"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    # The local user whose key signs it; None for the instance actor. No foreign key: the
    # Delete of an account must still go out after its row is gone, and so must its key,
    # read when the activity is stored (the row is deleted once every delivery is done).
    signer_id: so.Mapped[int | None]
    key_id: so.Mapped[str] = so.mapped_column(sa.String(INBOX_MAX))
    private_pem: so.Mapped[str] = so.mapped_column(sa.Text)
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class Delivery(Model):
    """One activity to one inbox, owned by the workers until it is delivered or given up."""

    __tablename__ = "delivery"
    __table_args__ = (
        sa.UniqueConstraint("activity_id", "inbox"),
        # The claim: due rows, oldest first.
        sa.Index("ix_delivery_next_attempt_at", "next_attempt_at"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    activity_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("outgoing_activity.id", ondelete="CASCADE"), index=True
    )
    inbox: so.Mapped[str] = so.mapped_column(sa.String(INBOX_MAX))
    # The inbox's host[:port]: the unit of the circuit breaker and of the counts.
    host: so.Mapped[str] = so.mapped_column(sa.String(HOST_MAX), index=True)
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    next_attempt_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    claimed_by: so.Mapped[str | None] = so.mapped_column(sa.String(CONSUMER_ID_MAX))
    claimed_until: so.Mapped[datetime | None]
    last_error: so.Mapped[str | None] = so.mapped_column(sa.String(ERROR_MAX))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class FederationHost(Model):
    """A server we deliver to: its current run of failures, its pause, and its counts."""

    __tablename__ = "federation_host"

    host: so.Mapped[str] = so.mapped_column(sa.String(HOST_MAX), primary_key=True)
    # Transient failures in a row (5xx, timeouts, refused connections); 0 once it answers.
    failures: so.Mapped[int] = so.mapped_column(default=0)
    failing_since: so.Mapped[datetime | None]
    # Set: the breaker is open; nothing is sent there but one probe once this time passes.
    paused_until: so.Mapped[datetime | None]
    # The probe in flight (a lease, like a delivery's claim).
    probe_until: so.Mapped[datetime | None]
    delivered: so.Mapped[int] = so.mapped_column(default=0)
    refused: so.Mapped[int] = so.mapped_column(default=0)  # final 4xx answers
    dropped: so.Mapped[int] = so.mapped_column(default=0)  # given up after retrying
    last_error: so.Mapped[str | None] = so.mapped_column(sa.String(ERROR_MAX))
    last_success_at: so.Mapped[datetime | None]

    def state(self, now: datetime) -> str:
        """ "ok", "retrying" or "paused" (see `paused_until`)."""
        if self.paused_until is not None:
            return "paused"
        return "retrying" if self.failures else "ok"


@dataclass(frozen=True)
class Policy:
    """The retry schedule and the breaker's thresholds (settings; tests shrink them)."""

    retry_base: float
    retry_max: float
    retry_for: float
    retry_after_max: float
    breaker_failures: int
    pause: float
    dead_after: float
    lease: float

    @classmethod
    def from_config(cls) -> "Policy":
        config = current_app.config
        timeout = config["FEDERATION_REQUEST_TIMEOUT"]
        return cls(
            retry_base=config["FEDERATION_RETRY_BASE_SECONDS"],
            retry_max=config["FEDERATION_RETRY_MAX_SECONDS"],
            retry_for=config["FEDERATION_RETRY_FOR_SECONDS"],
            retry_after_max=config["FEDERATION_RETRY_AFTER_MAX_SECONDS"],
            breaker_failures=config["FEDERATION_BREAKER_FAILURES"],
            pause=config["FEDERATION_PAUSE_SECONDS"],
            dead_after=config["FEDERATION_DEAD_AFTER_SECONDS"],
            # Longer than any request can last, so that a live consumer's claim never lapses.
            lease=2 * timeout + 30,
        )

    def retry_delay(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`: doubling from the base, capped, with
        ±10 % jitter so that retries of one fan-out do not arrive together."""
        delay = min(self.retry_base * 2 ** min(attempts - 1, 30), self.retry_max)
        return delay * random.uniform(0.9, 1.1)

    def pause_for(self, failures: int) -> float:
        """How long a host stays paused after its `failures`-th failure in a row."""
        extra = max(failures - self.breaker_failures, 0)
        return min(self.pause * 2 ** min(extra, 30), self.retry_max)


@dataclass
class Claimed:
    """A claimed delivery, with what the sender needs."""

    id: int
    activity_id: int
    inbox: str
    host: str
    attempts: int
    probe: bool = False


@dataclass
class Outcome:
    """What became of one attempt: "delivered", "refused" (final) or "failed" (transient;
    retried, `retry_after` seconds from now when the server said so)."""

    delivery_id: int
    host: str
    result: str
    error: str | None = None
    retry_after: float | None = None
    probe: bool = False


def host_of(url: str) -> str:
    """The host[:port] an inbox URL belongs to, lower-cased (no user info)."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1].lower()[:HOST_MAX]


def store(
    body: str, signer: tuple[int | None, str, str], inboxes: Iterable[str], policy: Policy
) -> int:
    """Add the activity, signed by `signer` (user id, key id, private PEM), and one delivery
    per distinct inbox (flushed, not committed); inboxes on a host unreachable for longer
    than the policy allows are counted as dropped instead. Returns how many were added."""
    signer_id, key_id, private_pem = signer
    activity = OutgoingActivity(
        signer_id=signer_id, key_id=key_id, private_pem=private_pem, body=body
    )
    db.session.add(activity)
    db.session.flush()
    targets = {inbox: host_of(inbox) for inbox in dict.fromkeys(inboxes)}
    dead = dead_hosts(set(targets.values()), policy)
    rows = [
        {"activity_id": activity.id, "inbox": inbox, "host": host}
        for inbox, host in targets.items()
        if host not in dead
    ]
    if rows:
        db.session.execute(sa.insert(Delivery), rows)
    for host in dead:
        count = sum(1 for target in targets.values() if target == host)
        execute_dml(
            sa.update(FederationHost)
            .where(FederationHost.host == host)
            .values(dropped=FederationHost.dropped + count)
        )
    return len(rows)


def dead_hosts(hosts: Collection[str], policy: Policy) -> set[str]:
    """Those of `hosts` paused and failing for longer than the policy's `dead_after`."""
    if not hosts:
        return set()
    since = utcnow() - timedelta(seconds=policy.dead_after)
    query = sa.select(FederationHost.host).where(
        FederationHost.host.in_(list(hosts)),
        FederationHost.paused_until.is_not(None),
        FederationHost.failing_since < since,
    )
    return set(db.session.scalars(query))


def _claimable(now: datetime, dead_consumers: Collection[str]) -> sa.ColumnElement[bool]:
    """Rows nobody works on: never claimed, a lapsed lease, or the claim of a consumer known
    to be dead. (One not yet known at all may have just started: its lease stands.)"""
    return sa.or_(
        Delivery.claimed_by.is_(None),
        Delivery.claimed_until < now,
        Delivery.claimed_by.in_(list(dead_consumers)),
    )


def _claim(where: sa.ColumnElement[bool], limit: int, consumer: str, lease: float) -> Sequence[Any]:
    """Claim up to `limit` rows matching `where` for `consumer`, oldest due first; commits."""
    now = utcnow()
    chosen = materialized(
        sa.select(Delivery.id)
        .where(where)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Delivery)
    )
    claim = (
        sa.update(Delivery)
        .where(Delivery.id.in_(sa.select(chosen.c.id)))
        .values(claimed_by=consumer, claimed_until=now + timedelta(seconds=lease))
        .returning(
            Delivery.id, Delivery.activity_id, Delivery.inbox, Delivery.host, Delivery.attempts
        )
        .execution_options(synchronize_session=False)
    )
    rows = db.session.execute(claim).all()
    db.session.commit()
    return rows


def claim_due(
    limit: int, consumer: str, dead_consumers: Collection[str], policy: Policy
) -> list[Claimed]:
    """Claim up to `limit` due deliveries to hosts that are not paused."""
    now = utcnow()
    paused = sa.select(FederationHost.host).where(FederationHost.paused_until.is_not(None))
    where = sa.and_(
        Delivery.next_attempt_at <= now,
        _claimable(now, dead_consumers),
        Delivery.host.not_in(paused.scalar_subquery()),
    )
    return [Claimed(*row) for row in _claim(where, limit, consumer, policy.lease)]


def claim_probes(
    limit: int, consumer: str, dead_consumers: Collection[str], policy: Policy
) -> list[Claimed]:
    """For up to `limit` paused hosts whose pause is over, take the probe (one at a time per
    host) and claim that host's oldest delivery for it."""
    now = utcnow()
    due = db.session.scalars(
        sa.select(FederationHost.host)
        .where(
            FederationHost.paused_until <= now,
            sa.or_(FederationHost.probe_until.is_(None), FederationHost.probe_until < now),
            # A paused host with nothing to send stays paused (and, dead, drops new ones).
            sa.exists().where(Delivery.host == FederationHost.host),
        )
        .limit(limit)
    ).all()
    probes = []
    for host in due:
        taken = execute_dml(
            sa.update(FederationHost)
            .where(
                FederationHost.host == host,
                FederationHost.paused_until <= now,
                sa.or_(FederationHost.probe_until.is_(None), FederationHost.probe_until < now),
            )
            .values(probe_until=now + timedelta(seconds=policy.lease))
        ).rowcount
        db.session.commit()
        if not taken:
            continue  # another consumer probes it
        where = sa.and_(Delivery.host == host, _claimable(now, dead_consumers))
        rows = _claim(where, 1, consumer, policy.lease)
        if rows:
            found = Claimed(*rows[0])
            found.probe = True
            probes.append(found)
    return probes


def _close_breaker(host: str) -> None:
    execute_dml(
        sa.update(FederationHost)
        .where(FederationHost.host == host)
        .values(failures=0, failing_since=None, paused_until=None, probe_until=None)
    )


def release(host: str) -> int:
    """Close the breaker of `host` and make all its deliveries due now (a successful probe,
    or an admin's "retry now"); returns how many. Not committed."""
    _close_breaker(host)
    return execute_dml(
        sa.update(Delivery).where(Delivery.host == host).values(next_attempt_at=utcnow())
    ).rowcount


def record(outcomes: Sequence[Outcome], policy: Policy) -> bool:
    """Write what became of a set of attempts, in one transaction. Returns whether a probe
    succeeded (its host's deliveries are then due again)."""
    now = utcnow()
    done = [o.delivery_id for o in outcomes if o.result in ("delivered", "refused")]
    if done:
        execute_dml(sa.delete(Delivery).where(Delivery.id.in_(done)))
    dropped_by_host = _reschedule([o for o in outcomes if o.result == "failed"], policy, now)
    released = False
    for host, mine in _by_host(outcomes).items():
        _ensure_host(host)
        released |= _record_host(host, mine, dropped_by_host.get(host, 0), policy, now)
    db.session.commit()
    return released


def _by_host(outcomes: Sequence[Outcome]) -> dict[str, list[Outcome]]:
    grouped: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        grouped.setdefault(outcome.host, []).append(outcome)
    return grouped


def _reschedule(failed: Sequence[Outcome], policy: Policy, now: datetime) -> dict[str, int]:
    """Put failed deliveries back with their next attempt time, or drop those that have been
    retried for longer than the policy allows; returns the drops per host."""
    if not failed:
        return {}
    rows = {
        row.id: row
        for row in db.session.scalars(
            sa.select(Delivery).where(Delivery.id.in_([o.delivery_id for o in failed]))
        )
    }
    give_up_before = now - timedelta(seconds=policy.retry_for)
    dropped: dict[str, int] = {}
    for outcome in failed:
        row = rows.get(outcome.delivery_id)
        if row is None:
            continue
        if row.created_at < give_up_before:
            db.session.delete(row)
            dropped[row.host] = dropped.get(row.host, 0) + 1
            continue
        row.attempts += 1
        delay = policy.retry_delay(row.attempts)
        if outcome.retry_after is not None:
            delay = min(max(outcome.retry_after, 0.0), policy.retry_after_max)
        row.next_attempt_at = now + timedelta(seconds=delay)
        row.claimed_by = row.claimed_until = None
        row.last_error = (outcome.error or "")[:ERROR_MAX]
    return dropped


def _ensure_host(host: str) -> None:
    if db.session.get(FederationHost, host) is None:
        db.session.add(FederationHost(host=host))
        db.session.flush()


def _record_host(
    host: str, outcomes: list[Outcome], dropped: int, policy: Policy, now: datetime
) -> bool:
    """Update a host's counts and breaker from its outcomes; True when a probe of it
    succeeded (all its deliveries released)."""
    row = db.session.get(FederationHost, host)
    assert row is not None
    answered = [o for o in outcomes if o.result != "failed"]
    # A 429 is a server that answers and asks us to slow down: not a failure of the host.
    unreachable = [o for o in outcomes if o.result == "failed" and o.retry_after is None]
    row.delivered += sum(1 for o in answered if o.result == "delivered")
    row.refused += sum(1 for o in answered if o.result == "refused")
    row.dropped += dropped
    if answered:
        row.last_success_at = now
        if row.paused_until is not None or any(o.probe for o in answered):
            release(host)
            return True
        row.failures, row.failing_since = 0, None
        return False
    if not unreachable:
        return False
    row.failures += len(unreachable)
    row.failing_since = row.failing_since or now
    row.last_error = (unreachable[-1].error or "")[:ERROR_MAX]
    if row.failures >= policy.breaker_failures or row.paused_until is not None:
        row.paused_until = now + timedelta(seconds=policy.pause_for(row.failures))
        row.probe_until = None
        if row.failing_since < now - timedelta(seconds=policy.dead_after):
            row.dropped += drop_all(host)
    return False


def drop_all(host: str) -> int:
    """Give up every delivery to `host` (unreachable for too long); returns how many."""
    return execute_dml(sa.delete(Delivery).where(Delivery.host == host)).rowcount


def next_due() -> datetime | None:
    """When the next delivery or probe that nobody holds becomes due (None: none waits)."""
    now = utcnow()
    paused = sa.select(FederationHost.host).where(FederationHost.paused_until.is_not(None))
    delivery = db.session.scalar(
        sa.select(sa.func.min(Delivery.next_attempt_at)).where(
            Delivery.host.not_in(paused.scalar_subquery()),
            sa.or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
        )
    )
    probe = db.session.scalar(
        sa.select(sa.func.min(FederationHost.paused_until)).where(
            sa.or_(FederationHost.probe_until.is_(None), FederationHost.probe_until < now),
            sa.exists().where(Delivery.host == FederationHost.host),
        )
    )
    moments = [moment for moment in (delivery, probe) if moment is not None]
    return min(moments) if moments else None


def activities(ids: Collection[int]) -> dict[int, tuple[str, str, str]]:
    """(key id, private PEM, body) of each activity."""
    query = sa.select(
        OutgoingActivity.id,
        OutgoingActivity.key_id,
        OutgoingActivity.private_pem,
        OutgoingActivity.body,
    )
    return {
        row.id: (row.key_id, row.private_pem, row.body)
        for row in db.session.execute(query.where(OutgoingActivity.id.in_(list(ids))))
    }


def forget_sent_activities(older_than: timedelta) -> int:
    """Delete activities with no delivery left (all sent or given up)."""
    pending = sa.select(Delivery.activity_id).distinct()
    return execute_dml(
        sa.delete(OutgoingActivity).where(
            OutgoingActivity.created_at < utcnow() - older_than,
            OutgoingActivity.id.not_in(pending.scalar_subquery()),
        )
    ).rowcount


def backlog() -> dict[str, Any]:
    """The outbound queue: deliveries waiting (`pending`), the oldest of them (`oldest`),
    and those due now on hosts that are not paused (`due`, `oldest_due`: when the oldest
    became due). Due deliveries that wait long mean the workers are behind."""
    count, oldest = db.session.execute(
        sa.select(sa.func.count(Delivery.id), sa.func.min(Delivery.created_at))
    ).one()
    paused = sa.select(FederationHost.host).where(FederationHost.paused_until.is_not(None))
    due, oldest_due = db.session.execute(
        sa.select(sa.func.count(Delivery.id), sa.func.min(Delivery.next_attempt_at)).where(
            Delivery.next_attempt_at <= utcnow(), Delivery.host.not_in(paused.scalar_subquery())
        )
    ).one()
    return {"pending": count, "oldest": oldest, "due": due, "oldest_due": oldest_due}


def hosts_overview(limit: int = 200) -> tuple[list[dict[str, Any]], int]:
    """Known hosts with their state, counts and deliveries waiting, those in trouble first
    (paused, then retrying), at most `limit` of them; and how many hosts there are in all."""
    waiting = dict(
        db.session.execute(
            sa.select(Delivery.host, sa.func.count(Delivery.id)).group_by(Delivery.host)
        ).all()
    )
    total = db.session.scalar(sa.select(sa.func.count(FederationHost.host))) or 0
    rows = db.session.scalars(
        sa.select(FederationHost)
        .order_by(
            FederationHost.paused_until.is_(None),
            FederationHost.failures == 0,
            FederationHost.host,
        )
        .limit(limit)
    ).all()
    now = utcnow()
    overview = [
        {"row": row, "host": row.host, "state": row.state(now), "pending": waiting.pop(row.host, 0)}
        for row in rows
    ]
    # Hosts with deliveries but no attempt yet.
    overview += [
        {"row": None, "host": host, "state": "ok", "pending": count}
        for host, count in sorted(waiting.items())[: max(limit - len(overview), 0)]
    ]
    return overview, total + len(waiting)


def seconds_between(earlier: datetime | None, later: datetime) -> float | None:
    return None if earlier is None else max((later - earlier).total_seconds(), 0.0)


def ceil_div(total: int, part: int) -> int:
    return math.ceil(total / max(part, 1))
