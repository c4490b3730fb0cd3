#!/usr/bin/env python
"""Benchmark federation: deliveries out and activities in, with the site as `./run.sh` starts
it (supervise.py forking gunicorn and a real consumer from one parent) on SQLite, against
fake servers on loopback (tests/fake_inboxes.py, another process) that count what they
receive and check a sample of the signatures with httpsig.

- fan-out: alice, with 10,000 followers on 1,000 servers, posts; the time from the POST to
  the last server's delivery, and its ratio to the floor: the same 1,000 requests signed and
  sent with the same client at the same concurrency from one tight loop (no database, no
  queue);
- dead hosts: the same with 20 % of the servers refusing connections and 10 % never
  answering: when the live ones all have it, and later how many dead ones are paused;
- crash: the consumer SIGKILLed in the middle of a fan-out, and started again by its parent
  (after its one-second delay); duplicates counted;
- inbound: signed Create(Note)s from 200 remote actors at the inbox for `--inbound-seconds`:
  accepted requests a second, p95 of the 202, and how long the worker takes to catch up;
- memory: PSS summed over every process of the site (the parent, gunicorn's master and 2
  workers, the consumer) after the loads, and the consumer's peak RSS.

Run with `./run.sh bench` or `python tests/bench_federation.py [--servers 1000]
[--followers-per-server 10] [--inbound-seconds 30]`.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from email.utils import formatdate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpsig  # noqa: E402
import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

import actors  # noqa: E402
import fedsign  # noqa: E402
from database import db  # noqa: E402
from delivery_sender import Limits, make_client  # noqa: E402
from follows import Follows  # noqa: E402
from microblog import create_app  # noqa: E402
from models import User, followers  # noqa: E402
from tests.helpers import add_user  # noqa: E402
from tests.live import Browser, LiveSite, free_port, wait_for  # noqa: E402
from tests.live import children as named_children  # noqa: E402

PASSWORD = "bench password"
GOAL_SECONDS = 5.0
GOAL_RATIO = 2.0
GOAL_CONSUMER_RSS_MIB = 150
GOAL_PSS_MIB = 250
GOAL_INBOUND_RATE = 300
GOAL_INBOUND_P95_MS = 50
GOAL_CATCH_UP_SECONDS = 5.0


def settings(site_url: str) -> dict:
    return {
        "SITE_URL": site_url,
        "FEDERATION": "true",
        "FEDERATION_ALLOW_HTTP": "true",
        "FEDERATION_ALLOW_PRIVATE": "true",
        # The dead hosts' schedule, shortened so that the run shows it.
        "FEDERATION_RETRY_BASE_SECONDS": "2",
        "FEDERATION_PAUSE_SECONDS": "5",
        "MICROBLOG_PERIODIC_SECONDS": "1",
        "FEDERATION_INBOX_LIMIT_PER_HOST": "1000000",
    }


# --- the site -------------------------------------------------------------------------------


def make_site(data_dir: Path) -> tuple:
    """A data dir with its schema, alice (and her key), and the site to start on it. Its
    SITE_URL names a port of its own: inbox requests are addressed there (their Host), and
    sent to wherever gunicorn listens."""
    port = free_port()
    site_url = f"http://127.0.0.1:{port}"
    env = settings(site_url)
    app = create_app(
        {"DATA_DIR": str(data_dir), **{k: v for k, v in env.items()}}
        | {"FEDERATION": True, "FEDERATION_ALLOW_HTTP": True, "FEDERATION_ALLOW_PRIVATE": True}
    )
    with app.app_context():
        db.create_all()
    alice = add_user(app, "alice", generate_password_hash(PASSWORD))
    with app.app_context():
        public_pem = actors.local_key(alice).public_pem
    site = LiveSite(data_dir, **env)
    return app, site, alice, public_pem, port


def seed_followers(app, alice: int, ports: list[int], per_server: int, prefix: str) -> None:
    """`per_server` remote followers of alice on each server (a shared inbox per server)."""
    with app.app_context():
        users, remote, follows = [], [], []
        first_id = (db.session.scalar(sa.select(sa.func.max(User.id))) or 0) + 1
        next_id = first_id
        for port in ports:
            base = f"http://127.0.0.1:{port}"
            for n in range(per_server):
                name = f"{prefix}{port}x{n}"
                users.append({"id": next_id, "username": f"{name}@127.0.0.1:{port}",
                              "domain": f"127.0.0.1:{port}",
                              "session_generation": "x"})  # fmt: skip
                actor = f"{base}/users/{name}"
                remote.append({"user_id": next_id, "actor_url": actor, "inbox": f"{actor}/inbox",
                               "shared_inbox": f"{base}/inbox", "key_id": f"{actor}#main-key",
                               "public_key_pem": "-"})  # fmt: skip
                follows.append({"follower_id": next_id, "followed_id": alice})
                next_id += 1
        db.session.execute(sa.insert(User), users)
        db.session.execute(sa.insert(actors.RemoteActor), remote)
        db.session.execute(sa.insert(followers), follows)
        db.session.commit()


def unfollow_all(app, alice: int) -> None:
    with app.app_context():
        db.session.execute(sa.delete(followers).where(followers.c.followed_id == alice))
        db.session.commit()


def post(site: LiveSite, browser: Browser, text: str) -> float:
    """Alice posts `text`; the Unix time just before the POST."""
    token = browser.csrf_token("/index")
    started = time.time()
    status, _body = browser.submit("/index", {"post": text, "csrf_token": token})
    assert status == 200, status
    print(f"  the POST itself (stores the deliveries): {time.time() - started:.2f} s")
    return started


# --- the fake servers -----------------------------------------------------------------------


class FakeServers:
    def __init__(self, ok: int, hang: int, public_pem: str, workdir: Path):
        key = workdir / f"key-{uuid.uuid4().hex[:6]}.pem"
        key.write_text(public_pem)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_inboxes", "--ok", str(ok), "--hang", str(hang),
             "--public-key", str(key)],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        ports = json.loads(self.process.stdout.readline())
        self.ok, self.hang, self.control = ports["ok"], ports["hang"], ports["control"]

    def stats(self, with_times=False) -> dict:
        path = "/stats?times" if with_times else "/stats"
        answer = httpx.get(f"http://127.0.0.1:{self.control}{path}", timeout=30)
        return answer.json()

    def stop(self):
        self.process.terminate()  # SIGTERM: gone at once, hung connections and all
        self.process.wait(timeout=30)


def wait_until_all_have(servers: FakeServers, ports, marker: str, timeout=120.0) -> dict:
    """The stats once every one of `ports` has an activity whose id contains `marker`."""
    wanted = {str(port) for port in ports}

    def done():
        stats = servers.stats()
        have = {
            port for port, counts in stats["received"].items() if any(marker in k for k in counts)
        }
        return stats if wanted <= have else None

    return wait_for(done, timeout=timeout, interval=0.05, what="every server to have it")


def last_arrival(stats: dict) -> float:
    return stats["last_at"]


def arrivals(stats: dict, started: float) -> str:
    """When a tenth, half and nine tenths of the requests had arrived, after `started`."""
    times = sorted(stats["times"])
    marks = {f"{share}%": times[len(times) * share // 100 - 1] - started for share in (10, 50, 90)}
    return ", ".join(f"{name} by {seconds:.2f} s" for name, seconds in marks.items())


def duplicates(stats: dict, marker: str) -> int:
    return sum(
        count - 1
        for counts in stats["received"].values()
        for key, count in counts.items()
        if marker in key and count > 1
    )


# --- the floor ------------------------------------------------------------------------------


def floor_seconds(app, alice: int, ports: list[int], body: bytes, concurrency: int) -> float:
    """Sign and send one request to each server: the same client, the same concurrency, one
    tight loop, nothing else."""
    with app.app_context():
        key_id, private_pem = actors.signing_key_for(alice)
        limits = Limits.from_config(app.config)
    limits = Limits(concurrency, concurrency * 4, limits.connect_timeout, limits.total_timeout, 1)

    async def run():
        gate = asyncio.Semaphore(concurrency)
        async with make_client(limits) as client:

            async def one(port):
                url = f"http://127.0.0.1:{port}/inbox"
                async with gate:
                    headers = fedsign.sign_request(
                        "POST", url, key_id=key_id, private_pem=private_pem, body=body
                    )
                    answer = await client.post(url, content=body, headers=headers)
                    assert answer.status_code == 202

            await asyncio.gather(*(one(port) for port in ports))

    started = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - started


# --- memory ---------------------------------------------------------------------------------


def pss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def memory(site: LiveSite) -> dict:
    """PSS of every process of the site (started by start_all()), by role."""
    processes = {"parent (supervise.py)": site.web.pid}
    for child, name in named_children(site.web.pid).items():
        if name == "gunicorn":
            processes["gunicorn master"] = child
            for n, worker in enumerate(children(child), 1):
                processes[f"web worker {n}"] = worker
        else:
            processes[name] = child
    return {name: pss_mib(pid) for name, pid in processes.items()}


# --- inbound --------------------------------------------------------------------------------


def seed_remote_actors(app, count: int) -> list[tuple[str, str]]:
    """`count` remote actors known here (with their keys), followed by alice; their
    (actor URL, private PEM)."""
    made = []
    with app.app_context():
        alice = db.session.scalar(sa.select(User).where(User.username == "alice"))
        for n in range(count):
            private_pem, public_pem = fedsign.new_key_pair()
            base = f"https://remote{n % 20}.example"
            document = {
                "@context": ["https://www.w3.org/ns/activitystreams"],
                "id": f"{base}/users/r{n}",
                "type": "Person",
                "preferredUsername": f"r{n}",
                "inbox": f"{base}/users/r{n}/inbox",
                "publicKey": {
                    "id": f"{base}/users/r{n}#main-key",
                    "owner": f"{base}/users/r{n}",
                    "publicKeyPem": public_pem,
                },
            }
            user = actors.store_remote_actor(document)
            Follows(alice).follow(user)
            made.append((document["id"], private_pem))
        db.session.commit()
    return made


# Requests signed ahead per second of the inbound run: more than the inbox can take.
PRESIGNED_PER_SECOND = 800


def signed_creates(senders, host: str, count: int) -> list[bytes]:
    """`count` whole HTTP requests, each a Create(Note) from one of `senders` signed as another
    server would sign it, with httpsig (each sender's key loaded once)."""
    signers = [
        (actor, httpsig.HeaderSigner(f"{actor}#main-key", pem, algorithm="rsa-sha256",
                                     headers=["(request-target)", "host", "date", "digest"]))
        for actor, pem in senders
    ]  # fmt: skip
    requests = []
    for n in range(count):
        actor, signer = signers[n % len(signers)]
        activity = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{actor}/create/{n}",
            "type": "Create",
            "actor": actor,
            "object": {
                "id": f"{actor}/notes/{n}",
                "type": "Note",
                "attributedTo": actor,
                "content": f"<p>note {n}</p>",
                "to": ["https://www.w3.org/ns/activitystreams#Public"],
            },
        }
        body = json.dumps(activity).encode()
        headers = signer.sign(
            {
                "Host": host,
                "Date": formatdate(usegmt=True),
                "Digest": fedsign.body_digest(body),
                "Content-Type": "application/activity+json",
                "Content-Length": str(len(body)),
            },
            host=host,
            method="POST",
            path="/inbox",
        )
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        requests.append(f"POST /inbox HTTP/1.1\r\n{head}\r\n".encode() + body)
    return requests


async def answer_of(reader) -> tuple[int, bool]:
    """The status of the HTTP/1.1 answer read from `reader`, and whether the server closes."""
    status = int((await reader.readline()).split()[1])
    length, closes = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            closes = True
    await reader.readexactly(length)
    return status, closes


def inbound(site: LiveSite, site_url: str, senders, seconds: float, concurrency=16) -> dict:
    """POST signed Create(Note)s from `senders` for `seconds`; rate, p95, catch-up.

    The requests are signed before the clock starts and sent over `concurrency` keep-alive
    connections written by hand: signing (httpsig takes 2 ms a request) and an HTTP client
    library (httpx, 3 ms) on the same two cores cost more CPU than the inbox measured, so the
    load generator, not the server, set the rate."""
    host = site_url.split("://", 1)[1]
    prepared = signed_creates(senders, host, int(seconds * PRESIGNED_PER_SECOND))
    pending = iter(prepared)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    address = site.url.split("://", 1)[1].split(":")

    async def sender(stop_at):
        reader, writer = await asyncio.open_connection(address[0], int(address[1]))
        try:
            for raw in pending:
                started = time.perf_counter()
                writer.write(raw)
                status, closes = await answer_of(reader)
                if status == 202:  # a refusal (503 when the worker is behind) is quick
                    latencies.append(time.perf_counter() - started)
                if status != 202 and not statuses:
                    print(f"  first refusal: {status}")
                statuses[status] = statuses.get(status, 0) + 1
                if time.monotonic() >= stop_at:
                    break
                if closes:
                    writer.close()
                    reader, writer = await asyncio.open_connection(address[0], int(address[1]))
        finally:
            writer.close()

    async def run():
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(sender(stop_at) for _ in range(concurrency)))

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    stopped = time.monotonic()
    if sum(statuses.values()) == len(prepared):
        print(f"  all {len(prepared)} signed requests were sent before the time was up")

    def caught_up():
        rows = site.query("SELECT count(*) FROM inbox_activities WHERE state = 'received'")
        return rows[0][0] == 0

    wait_for(caught_up, timeout=600, interval=0.05, what="the worker to catch up")
    catch_up = time.monotonic() - stopped
    accepted = statuses.get(202, 0)
    stored = site.query("SELECT count(*) FROM inbox_activities")[0][0]
    return {
        "accepted_per_second": accepted / elapsed,
        "p95_ms": statistics.quantiles(latencies, n=20)[-1] * 1000,
        "statuses": statuses,
        "catch_up_seconds": catch_up,
        "stored": stored,
        "accepted": accepted,
    }


# --- the runs -------------------------------------------------------------------------------


def report(name: str, value: float, goal: float, unit: str, lower_is_better=True) -> None:
    met = value <= goal if lower_is_better else value >= goal
    sign = "<=" if lower_is_better else ">="
    print(
        f"  {name}: {value:.2f} {unit} (goal {sign} {goal:g} {unit}: {'met' if met else 'NOT met'})"
    )


def fan_out(args, workdir: Path) -> None:
    data_dir = workdir / "fanout"
    data_dir.mkdir()
    app, site, alice, public_pem, port = make_site(data_dir)
    live = FakeServers(args.servers, 0, public_pem, workdir)
    seed_followers(app, alice, live.ok, args.followers_per_server, "f")
    try:
        site.start_all(workers=2)
        consumer = site.consumer_pid()
        browser = Browser(site.url)
        browser.login("alice", PASSWORD)
        print(f"== fan-out: {args.servers * args.followers_per_server} followers on "
              f"{args.servers} servers")  # fmt: skip
        started = post(site, browser, "fan-out one")
        # The post's activity id names its post URL; every Create carries it.
        stats = wait_until_all_have(live, live.ok, "/post/")
        took = last_arrival(stats) - started
        concurrency = int(site.env.get("FEDERATION_DELIVERY_CONCURRENCY", 64))
        body = json.dumps({"id": "floor", "type": "Create", "pad": "x" * 600}).encode()
        floor = floor_seconds(app, alice, live.ok, body, concurrency)
        print(f"  POST to last delivery: {took:.2f} s; floor (sign + send, one loop): "
              f"{floor:.2f} s")  # fmt: skip
        report("POST to last delivery", took, GOAL_SECONDS, "s")
        report("ratio to the floor", took / floor, GOAL_RATIO, "x")
        good, bad = stats["verified"], stats["bad_signatures"]
        print(f"  signatures checked by httpsig: {good} good, {bad} bad; "
              f"duplicates: {duplicates(stats, '/post/')}")  # fmt: skip
        report("consumer peak RSS", peak_rss_mib(consumer), GOAL_CONSUMER_RSS_MIB, "MiB")

        print("== crash: SIGKILL of the consumer mid fan-out; its parent starts it again")
        started = post(site, browser, "fan-out two")

        def some_have_it():
            counts = live.stats()["received"].values()
            have = sum(1 for c in counts if sum(v for k, v in c.items() if "/post/" in k) >= 2)
            return have >= args.servers // 3

        wait_for(some_have_it, timeout=120, interval=0.01, what="a third delivered")
        os.kill(consumer, signal.SIGKILL)
        before = live.stats()
        wait_for(lambda: site.consumer_pid() not in (None, consumer), what="a new consumer")
        stats = wait_until_all_have_second(live, live.ok)
        had_it = sum(
            1 for c in before["received"].values() if sum(1 for k in c if "/post/" in k) >= 2
        )
        print(f"  killed when {had_it} servers had it; "
              f"all {len(live.ok)} have it {last_arrival(stats) - started:.2f} s "
              f"after the POST; duplicates: {duplicates(stats, '/post/')}")  # fmt: skip

        if args.inbound_seconds:
            print(f"== inbound: signed Create(Note) from 200 actors for {args.inbound_seconds} s")
            senders = seed_remote_actors(app, 200)
            result = inbound(site, site.env["SITE_URL"], senders, args.inbound_seconds)
            report("accepted", result["accepted_per_second"], GOAL_INBOUND_RATE, "req/s",
                   lower_is_better=False)  # fmt: skip
            report("p95 of the 202", result["p95_ms"], GOAL_INBOUND_P95_MS, "ms")
            report("caught up after the load", result["catch_up_seconds"],
                   GOAL_CATCH_UP_SECONDS, "s")  # fmt: skip
            lost = result["accepted"] - result["stored"]
            print(f"  answers: {result['statuses']}; stored {result['stored']} of "
                  f"{result['accepted']} accepted ({lost} lost)")  # fmt: skip

        print("== memory after the loads (PSS), federation on, SQLite")
        sizes = memory(site)
        for name, size in sizes.items():
            print(f"  {name}: {size:.0f} MiB")
        report("all processes", sum(sizes.values()), GOAL_PSS_MIB, "MiB")
        report("consumer peak RSS", peak_rss_mib(site.consumer_pid()), GOAL_CONSUMER_RSS_MIB,
               "MiB")  # fmt: skip
    finally:
        site.stop()
        live.stop()


def wait_until_all_have_second(servers: FakeServers, ports) -> dict:
    """The stats once every server has the second post (two /post/ ids)."""
    wanted = {str(port) for port in ports}

    def done():
        stats = servers.stats()
        have = {
            port
            for port, counts in stats["received"].items()
            if sum(1 for key in counts if "/post/" in key) >= 2
        }
        return stats if wanted <= have else None

    return wait_for(done, timeout=300, interval=0.05, what="every server to have the second post")


def dead_hosts(args, workdir: Path) -> None:
    data_dir = workdir / "dead"
    data_dir.mkdir()
    app, site, alice, public_pem, port = make_site(data_dir)
    refusing_count, hanging = args.servers // 5, args.servers // 10
    servers = FakeServers(args.servers - refusing_count - hanging, hanging, public_pem, workdir)
    taken = set(servers.ok + servers.hang)
    refusing: set[int] = set()
    while len(refusing) < refusing_count:  # ports nothing listens on
        port = free_port()
        if port not in taken:
            refusing.add(port)
    seed_followers(app, alice, servers.ok + servers.hang + sorted(refusing),
                   args.followers_per_server, "d")  # fmt: skip
    try:
        site.start_all(workers=2)
        browser = Browser(site.url)
        browser.login("alice", PASSWORD)
        print(f"== dead hosts: {refusing_count} refuse connections, {hanging} never answer")
        started = post(site, browser, "to the living")
        stats = wait_until_all_have(servers, servers.ok, "/post/")
        report(f"all {len(servers.ok)} live servers have it", last_arrival(stats) - started,
               GOAL_SECONDS, "s")  # fmt: skip
        print(f"  requests arrived: {arrivals(servers.stats(with_times=True), started)}")
        time.sleep(args.dead_watch)
        rows = site.query("SELECT count(*), sum(paused_until IS NOT NULL) FROM federation_host "
                          "WHERE failures > 0")  # fmt: skip
        pending = site.query("SELECT count(*) FROM delivery")[0][0]
        failing, paused = rows[0]
        print(f"  after {args.dead_watch:g} s more: {failing} servers failing, {paused} of "
              f"them paused; {pending} deliveries waiting (the dead ones)")  # fmt: skip
    finally:
        site.stop()
        servers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--followers-per-server", type=int, default=10)
    parser.add_argument("--inbound-seconds", type=float, default=30)
    parser.add_argument("--dead-watch", type=float, default=20,
                        help="seconds to watch the dead hosts retried and paused")  # fmt: skip
    parser.add_argument("--skip-dead", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]} on "
          f"{os.cpu_count()} CPUs (figures scale with what else runs)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp:
        fan_out(args, Path(tmp))
        if not args.skip_dead:
            dead_hosts(args, Path(tmp))


if __name__ == "__main__":
    main()
