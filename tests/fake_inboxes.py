"""Many fake inbox servers in one process, for tests/bench_federation.py: `--ok N` servers that
answer 202 and `--hang N` that accept and never answer, each on its own loopback port. They
count every activity id they receive, note when, and check a sample of the signatures with
httpsig (an implementation nobody here wrote) against `--public-key`.

It prints one JSON line, {"ok": [ports], "hang": [ports], "control": port}, then serves; GET
/stats on the control port answers with the counts so far (/stats?times: and when each
request arrived).

    python -m tests.fake_inboxes --ok 700 --hang 100 --public-key key.pem
"""

import argparse
import asyncio
import json
import time

import httpsig

VERIFY_EVERY = 10  # one request in this many has its signature checked


class Stats:
    def __init__(self, public_pem: str):
        self.public_pem = public_pem
        self.received = {}  # port -> {activity id: count}
        self.last_at = 0.0
        self.first_at = 0.0
        self.requests = 0
        self.times = []  # when each request arrived
        self.verified = 0
        self.bad_signatures = 0

    def record(self, port, method, path, headers, body):
        self.requests += 1
        now = time.time()
        self.first_at = self.first_at or now
        self.last_at = now
        self.times.append(now)
        try:
            activity_id = json.loads(body)["id"]
        except (ValueError, KeyError, TypeError):
            activity_id = "?"
        counts = self.received.setdefault(port, {})
        counts[activity_id] = counts.get(activity_id, 0) + 1
        if self.requests % VERIFY_EVERY == 0:
            verifier = httpsig.HeaderVerifier(
                headers,
                self.public_pem,
                required_headers=["(request-target)", "host", "date", "digest"],
                method=method,
                path=path,
                sign_header="signature",
            )
            if verifier.verify():
                self.verified += 1
            else:
                self.bad_signatures += 1

    def as_json(self, with_times=False):
        return {
            "received": {str(port): counts for port, counts in self.received.items()},
            "first_at": self.first_at,
            "last_at": self.last_at,
            # Each request's arrival only when asked: the waits poll /stats every 50 ms.
            "times": self.times if with_times else None,
            "requests": self.requests,
            "verified": self.verified,
            "bad_signatures": self.bad_signatures,
        }


async def read_request(reader):
    """(method, path, headers, body) of the next request, or None at the end."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


def serve(stats, port_of, hang=False):
    async def handle(reader, writer):
        port = port_of[0]
        try:
            while True:
                method, path, headers, body = await read_request(reader)
                if hang:
                    await asyncio.sleep(3600)
                if path.startswith("/stats"):
                    answer = json.dumps(stats.as_json(path == "/stats?times")).encode()
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(answer), answer)
                    )
                else:
                    stats.record(port, method, path, headers, body)
                    writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    return handle


async def main(args):
    stats = Stats(open(args.public_key).read())
    ports = {"ok": [], "hang": []}
    servers = []
    for kind, count in (("ok", args.ok), ("hang", args.hang)):
        for _ in range(count):
            port_of = [0]
            server = await asyncio.start_server(
                serve(stats, port_of, hang=kind == "hang"), "127.0.0.1", 0, backlog=64
            )
            port_of[0] = server.sockets[0].getsockname()[1]
            ports[kind].append(port_of[0])
            servers.append(server)
    control = await asyncio.start_server(serve(stats, [0]), "127.0.0.1", 0)
    ports["control"] = control.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ok", type=int, default=0)
    parser.add_argument("--hang", type=int, default=0)
    parser.add_argument("--public-key", required=True)
    asyncio.run(main(parser.parse_args()))
