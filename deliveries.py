"""Sending activities to other servers: `deliver()` is the only way anything leaves.

`deliver()` stores the activity once and a delivery per inbox (delivery_store.py), commits
and queues `send_deliveries`. That task, in a consumer, claims due deliveries and sends them
with many requests in flight from its one thread (delivery_sender.py), records each outcome,
and queues itself again while more is due: a fan-out goes out in rounds of about
FEDERATION_DELIVERY_BATCH (a round with requests still waiting on slow servers goes on
claiming, up to ten seconds, rather than wait for them), each a task of its own, so that the
queue's other tasks (an export, an import) take their turn between rounds. A consumer runs
one round at a time; its other worker threads stay free for those tasks.

Nothing is lost when a consumer dies: the rows are the queue. Its claims lapse (at once when
its process is known to be gone) and the next round, on any consumer, sends them.
"""

import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import timedelta

import orjson
from flask import current_app
from huey import crontab

import actors
import delivery_store
import fedfetch
import fedsign
import worker
from database import db, utcnow
from delivery_sender import Limits, Pipeline, Request
from delivery_store import Claimed, Outcome, Policy
from worker import (
    app_context,
    consumer_heartbeats,
    huey,
    live_consumers,
    on_consumer_start,
)

log = logging.getLogger("huey.microblog")
# httpx logs every request at INFO: a fan-out would write a line per follower's server.
logging.getLogger("httpx").setLevel(logging.WARNING)

ACTIVITY_TYPE = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
# A fan-out larger than a round is shared among consumers: at most this many rounds are
# queued at once for it (each consumer runs one round at a time; extra ones end at once).
MAX_ROUNDS_QUEUED = 4
# Sent activities (all their deliveries done) are deleted after this long.
KEEP_SENT_ACTIVITIES = timedelta(hours=1)


def deliver(activity: dict, *, signer_id: int | None, inboxes: Iterable[str]) -> None:
    """Send `activity`, signed by the local user `signer_id` (None: the instance actor), to
    each distinct inbox: stored, committed, and the workers woken. Callable from a request
    or a task; commits the session."""
    body = orjson.dumps(activity).decode()
    signer = (signer_id, *actors.signing_key_for(signer_id))
    added = delivery_store.store(body, signer, inboxes, Policy.from_config())
    db.session.commit()
    if added:
        wake(added)


def wake(deliveries: int = 1) -> None:
    """Queue enough rounds for the consumers to share `deliveries` new deliveries."""
    batch = current_app.config["FEDERATION_DELIVERY_BATCH"]
    for _ in range(min(delivery_store.ceil_div(deliveries, batch), MAX_ROUNDS_QUEUED)):
        send_deliveries()


def retry_now(host: str) -> int:
    """An admin's "retry now": close the host's breaker and send all its deliveries now."""
    released = delivery_store.release(host)
    db.session.commit()
    wake(max(released, 1))
    return released


# --- the consumer's side ----------------------------------------------------------------

# Held while this process runs a round: a second round here would only compete with it.
_round_running = threading.Lock()


@huey.task(name="send_deliveries")
def send_deliveries() -> int:
    """One round: claim, sign and send due deliveries; queue the next round if more are
    due. Returns how many deliveries it attempted."""
    if not _round_running.acquire(blocking=False):
        return 0  # the running round queues the next one when it ends
    try:
        with app_context():
            attempted = run_round()
    finally:
        _round_running.release()
    if attempted:
        log.info("Delivery round on %s: %d attempted", worker.CONSUMER_ID, attempted)
    # After releasing the lock: a round queued meanwhile may already have ended at once.
    # A round that found nothing to claim queues none (what others hold, or what is not
    # due yet, the minute's wake_deliveries looks at again): no round chases its own tail.
    if attempted:
        with app_context():
            if more_due():
                send_deliveries()
    return attempted


@huey.periodic_task(crontab(minute="*"), name="wake_deliveries")
def wake_deliveries() -> None:
    """Start a round when retries or probes have become due; forget sent activities."""
    with app_context():
        delivery_store.forget_sent_activities(KEEP_SENT_ACTIVITIES)
        db.session.commit()
        due = more_due()
    if due:
        send_deliveries()


# A consumer that starts sends what its predecessor left at once, not at the next minute.
on_consumer_start(send_deliveries)


def more_due() -> bool:
    moment = delivery_store.next_due()
    return moment is not None and moment <= utcnow()


def run_round() -> int:
    config = current_app.config
    policy = Policy.from_config()
    live = {consumer.id for consumer in live_consumers()} | {worker.CONSUMER_ID}
    dead = set(consumer_heartbeats()) - live
    probe_next = True

    def claim(limit: int) -> list[Claimed]:
        # Each paused host whose pause is over gets one probe: looked for first, and again
        # whenever nothing else was due (a round may outlast a pause).
        nonlocal probe_next
        probes: list[Claimed] = []
        if probe_next:
            probes = delivery_store.claim_probes(limit, worker.CONSUMER_ID, dead, policy)
        due = delivery_store.claim_due(limit - len(probes), worker.CONSUMER_ID, dead, policy)
        probe_next = not due
        return probes + due

    def record(outcomes: list[Outcome]) -> None:
        delivery_store.record(outcomes, policy)

    preparer = Preparer()
    pipeline = Pipeline(
        Limits.from_config(config),
        claim,
        preparer,
        record,
        budget=config["FEDERATION_DELIVERY_BATCH"],
        pins=preparer.pins,
    )
    return pipeline.run()


class Preparer:
    """Turns claimed deliveries into signed requests, loading each activity once a round,
    and checking each target host once: the address it resolved to is the one connected to
    (`pins`, read by the sender)."""

    def __init__(self) -> None:
        self.activities: dict[int, tuple[str, str, bytes]] = {}
        self.unsafe: dict[str, str | None] = {}  # target origin -> why it is refused
        self.pins: dict[str, str] = {}  # host name -> the address checked

    def __call__(self, claimed: Sequence[Claimed]) -> tuple[list[Request], list[Outcome]]:
        self._load({c.activity_id for c in claimed} - self.activities.keys())
        requests, failed = [], []
        for delivery in claimed:
            try:
                requests.append(self._request(delivery))
            except fedfetch.UnsafeURL as exc:
                failed.append(_outcome(delivery, "refused", f"refused address: {exc}"))
            except fedfetch.FetchError as exc:  # its name does not resolve (yet)
                failed.append(_outcome(delivery, "failed", str(exc)))
            except Exception as exc:  # a bug or a missing key: retried on the schedule
                log.exception("Could not prepare delivery %s", delivery.id)
                failed.append(_outcome(delivery, "failed", f"not sent: {exc}"))
        return requests, failed

    def _load(self, activity_ids: set[int]) -> None:
        if activity_ids:
            for row_id, (key_id, pem, body) in delivery_store.activities(activity_ids).items():
                self.activities[row_id] = (key_id, pem, body.encode())

    def _request(self, delivery: Claimed) -> Request:
        self._check(delivery.inbox)
        key_id, private_pem, body = self.activities[delivery.activity_id]
        headers = fedsign.sign_request(
            "POST",
            delivery.inbox,
            key_id=key_id,
            private_pem=private_pem,
            body=body,
            content_type=ACTIVITY_TYPE,
        )
        return Request(delivery, body, headers)

    def _check(self, url: str) -> None:
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        if key not in self.unsafe:
            try:
                # The fence's own check, with the address it resolved (fedfetch connects its
                # requests to the address checked the same way).
                _scheme, host, _port, address = fedfetch._safe_address(url)
                self.pins[host.lower()] = address
                self.unsafe[key] = None
            except fedfetch.UnsafeURL as exc:
                self.unsafe[key] = str(exc)
        refusal = self.unsafe[key]
        if refusal is not None:
            raise fedfetch.UnsafeURL(refusal)


def _outcome(delivery: Claimed, result: str, error: str) -> Outcome:
    return Outcome(delivery.id, delivery.host, result, error=error[:300], probe=delivery.probe)


# --- what the pages and /readyz show -------------------------------------------------------


def backlog_problem(max_age: float) -> str | None:
    """Why /readyz should report the deliveries: due ones waiting longer than `max_age`
    seconds (the workers are behind); None when they keep up."""
    outbound = delivery_store.backlog()
    waited = delivery_store.seconds_between(outbound["oldest_due"], utcnow())
    if waited is None or waited <= max_age:
        return None
    return f"{outbound['due']} deliveries are due, the oldest for {waited / 60:.0f} min"
