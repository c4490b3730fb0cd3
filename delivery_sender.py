"""The HTTP side of deliveries: many POSTs in flight from one thread (asyncio + httpx), with
keep-alive per host, a short connect timeout and a bound on each request's whole time.

It knows nothing of the database: the engine (deliveries.py) hands it a way to claim work, to
prepare (sign) it and to record what became of it, and `Pipeline` keeps the requests flowing:
it claims more as slots free up, rather than sending in fixed batches that each wait for
their slowest member. A request still unanswered after `slow_after` seconds gives its slot
back (it goes on until the total timeout, but no longer holds up the others): a server that
accepts and never answers costs a socket, never the throughput. Nor does it hold up the
next deliveries at the round's end: a round ends when it has claimed its budget and nothing
it sent is in flight; until then it goes on claiming (for at most ROUND_MAX_SECONDS) rather
than idle while slow servers answer or time out.
"""

import asyncio
import email.utils
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

from delivery_store import Claimed, Outcome

# What a server's answer may be read up to (we only need its status; reading a little lets
# the connection be kept alive).
ANSWER_READ_MAX = 64 * 1024
# How many claimed deliveries are prepared (signed) at a time, at most; fewer are claimed
# only when that is all the room there is. Waiting for a whole chunk's room would let a
# few slow servers (each holding a slot for `slow_after`) stall the claims.
CLAIM_CHUNK = 50
CLAIM_AT_LEAST = 16
# Outcomes are written at least this often, and in one transaction per this many. What a
# killed consumer sends again is what was in flight plus what was answered in the last
# interval and not yet written.
RECORD_EVERY_SECONDS = 0.05
RECORD_EVERY_COUNT = 200
# After a claim found nothing due, the next one waits this long (while requests are in flight).
RECLAIM_SECONDS = 0.25
# A round claims past its budget (while requests are in flight) until it is this old.
ROUND_MAX_SECONDS = 10.0
USER_AGENT = "Microblog (ActivityPub delivery)"


@dataclass(frozen=True)
class Limits:
    concurrency: int  # requests in flight, not counting slow ones
    max_in_flight: int  # slow ones included
    connect_timeout: float
    total_timeout: float
    slow_after: float

    @classmethod
    def from_config(cls, config: Any) -> "Limits":
        concurrency = config["FEDERATION_DELIVERY_CONCURRENCY"]
        connect = config["FEDERATION_CONNECT_TIMEOUT"]
        return cls(
            concurrency=concurrency,
            max_in_flight=4 * concurrency,
            connect_timeout=connect,
            total_timeout=config["FEDERATION_REQUEST_TIMEOUT"],
            # Most servers answer in milliseconds; a request still unanswered after a
            # second waits on a slow or dead one.
            slow_after=1.0,
        )


@dataclass
class Request:
    """One signed POST to make for a claimed delivery."""

    claimed: Claimed
    body: bytes
    headers: dict[str, str]


# Given claimed deliveries: the requests to make, and the outcomes of those that cannot be
# sent at all (an unsafe address, a missing key).
Prepare = Callable[[Sequence[Claimed]], tuple[list[Request], list[Outcome]]]


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects each host to the address its check resolved (`pins`, host -> address), never
    to what a second DNS lookup might say: a server cannot pass the check with a public
    address and then point the connection at one of ours. URLs keep their host name, so TLS
    checks the certificate for it and connections are pooled per host."""

    def __init__(self, pins: dict[str, str]):
        self.pins = pins
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = self.pins.get(host.lower())
        if address is None:
            raise httpcore.ConnectError(f"{host} was not checked")
        return await self.inner.connect_tcp(
            address, port, timeout, local_address, socket_options=socket_options
        )

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def make_client(limits: Limits, pins: dict[str, str] | None = None) -> httpx.AsyncClient:
    """The client of one sending run: pooled keep-alive connections per host, no redirects
    (an inbox that redirects is not followed), no proxy from the environment; with `pins`,
    connections go only to the addresses checked (PinnedBackend)."""
    pool_limits = httpx.Limits(
        max_connections=limits.max_in_flight,
        max_keepalive_connections=limits.concurrency,
        keepalive_expiry=30,
    )
    transport = httpx.AsyncHTTPTransport(limits=pool_limits, trust_env=False)
    if pins is not None:
        # httpx takes no network backend; its transport's pool is httpcore's, which does.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=pool_limits.max_connections,
            max_keepalive_connections=pool_limits.max_keepalive_connections,
            keepalive_expiry=pool_limits.keepalive_expiry,
            network_backend=PinnedBackend(pins),
        )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(limits.total_timeout, connect=limits.connect_timeout),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value[:9])
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)


def outcome_of(claimed: Claimed, status: int, headers: httpx.Headers) -> Outcome:
    """2xx delivered; 408, 429 and 5xx retried; any other answer final."""
    made = Outcome(claimed.id, claimed.host, "delivered", probe=claimed.probe)
    if 200 <= status < 300:
        return made
    made.error = f"HTTP {status}"
    if status == 429:
        made.result, made.retry_after = "failed", retry_after_seconds(headers.get("Retry-After"))
    elif status == 408 or status >= 500:
        made.result = "failed"
    else:
        made.result = "refused"
    return made


async def post(client: httpx.AsyncClient, request: Request, limits: Limits) -> Outcome:
    """Send one delivery; never raises (every failure is an outcome)."""
    claimed = request.claimed
    try:
        async with asyncio.timeout(limits.total_timeout):
            async with client.stream(
                "POST", claimed.inbox, content=request.body, headers=request.headers
            ) as response:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= ANSWER_READ_MAX:
                        break
                return outcome_of(claimed, response.status_code, response.headers)
    except (TimeoutError, httpx.TimeoutException):
        error = f"no answer within {limits.total_timeout:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    return Outcome(claimed.id, claimed.host, "failed", error=error, probe=claimed.probe)


class Pipeline:
    """Claims, signs and sends until nothing is due, or `budget` deliveries were claimed and
    none is in flight (or the round is ROUND_MAX_SECONDS old), recording outcomes as they
    come."""

    def __init__(
        self,
        limits: Limits,
        claim: Callable[[int], list[Claimed]],
        prepare: Prepare,
        record: Callable[[list[Outcome]], None],
        budget: int,
        pins: dict[str, str] | None = None,
    ):
        self.limits = limits
        self.pins = pins
        self.claim = claim
        self.prepare = prepare
        self.record = record
        self.budget = budget
        self.claimed = 0
        self.active = 0  # requests holding a slot
        self.in_flight: set[asyncio.Task[Outcome]] = set()
        self.outcomes: list[Outcome] = []
        self.started = time.monotonic()
        self.found_nothing_at: float | None = None  # when a claim last came back empty

    def run(self) -> int:
        """Run to the end in a new event loop; returns how many deliveries were attempted."""
        return asyncio.run(self._run())

    async def _run(self) -> int:
        async with make_client(self.limits, self.pins) as client:
            last_record = time.monotonic()
            while True:
                self._start_more(client)
                if not self.in_flight:
                    break
                done, _ = await asyncio.wait(
                    self.in_flight, timeout=0.05, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    self.in_flight.discard(task)
                    self.outcomes.append(task.result())
                if (
                    len(self.outcomes) >= RECORD_EVERY_COUNT
                    or time.monotonic() - last_record >= RECORD_EVERY_SECONDS
                ):
                    self._flush()
                    last_record = time.monotonic()
        self._flush()
        return self.claimed

    def _room(self) -> int:
        """How many more may be claimed now (0 when the round claims no more)."""
        now = time.monotonic()
        if self.found_nothing_at is not None:
            if not self.in_flight or now - self.found_nothing_at < RECLAIM_SECONDS:
                return 0
        room = min(
            self.limits.concurrency - self.active, self.limits.max_in_flight - len(self.in_flight)
        )
        if self.claimed < self.budget:
            return min(room, self.budget - self.claimed)
        # Past the budget, while requests are still in flight: ending the round would mean
        # waiting for them, and slow servers answer (or time out) only after many seconds.
        return room if self.in_flight and now - self.started < ROUND_MAX_SECONDS else 0

    def _start_more(self, client: httpx.AsyncClient) -> None:
        """Claim and start as many as there is room for, in chunks; while requests hold
        slots, claim only when CLAIM_AT_LEAST are free (or the rest of the budget), to keep
        the claims few."""
        while (room := self._room()) > 0:
            if self.active and room < self._least_worth_claiming():
                return
            claimed = self.claim(min(room, CLAIM_CHUNK))
            self.claimed += len(claimed)
            self.found_nothing_at = None if claimed else time.monotonic()
            requests, failed = self.prepare(claimed)
            self.outcomes.extend(failed)
            for request in requests:
                self._start(client, request)

    def _least_worth_claiming(self) -> int:
        left = self.budget - self.claimed if self.claimed < self.budget else CLAIM_AT_LEAST
        return min(CLAIM_AT_LEAST, self.limits.concurrency, left)

    def _start(self, client: httpx.AsyncClient, request: Request) -> None:
        self.active += 1
        released = False

        def give_slot_back() -> None:
            nonlocal released
            if not released:
                released = True
                self.active -= 1

        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.limits.slow_after, give_slot_back)
        task = loop.create_task(post(client, request, self.limits))

        def finished(_task: asyncio.Task[Outcome]) -> None:
            timer.cancel()
            give_slot_back()

        task.add_done_callback(finished)
        self.in_flight.add(task)

    def _flush(self) -> None:
        if self.outcomes:
            outcomes, self.outcomes = self.outcomes, []
            self.record(outcomes)
