"""A remote fediverse server made with bovine, for our server to talk to.

Runs in .venv-bovine: `bovine_peer.py HOST`, on a free port of HOST. It serves actors at
/users/<name> (bovine's Actor document, an RSA key made by bovine), their inboxes, outboxes
and WebFinger, over plain http. Every request it receives is recorded; every inbox POST is
checked with bovine's own HTTP Signature validator (which fetches the signer's key, signed
as the receiving actor).

It takes commands as JSON lines on stdin and answers each with one JSON line on stdout
({"result": …} or {"error": …}); its first line says where it listens:
- {"op": "actor", "name": N}: serve a new actor N; its ids and private key.
- {"op": "update_actor", "name": N, "fields": {…}, "gone": bool}: change what N's actor
  document says, or make it answer 410 Gone.
- {"op": "get", "actor": N, "url": U}: a GET signed by N; status, headers and body.
- {"op": "post", "actor": N, "url": U, "activity": {…}}: a POST signed by N.
- {"op": "sign", "actor": N, "method": M, "url": U, "body": B?, "date": D?, "key_id": K?}: the
  headers bovine would send, without sending (for the fuzz to tamper with).
- {"op": "webfinger", "acct": A, "base": URL}: bovine's WebFinger lookup of A at URL.
- {"op": "received"}: the requests received so far (inbox POSTs with `signed_by`).
"""

import asyncio
import json
import logging
import sys
import traceback

import aiohttp
from aiohttp import web
from bovine.activitystreams import Actor
from bovine.clients import lookup_uri_with_webfinger
from bovine.clients.signed_http import SignedHttpClient
from bovine.clients.utils import host_target_from_url
from bovine.crypto import build_validate_http_signature_raw, generate_rsa_public_private_key
from bovine.crypto.helper import content_digest_sha256
from bovine.crypto.http_signature import build_signature
from bovine.crypto.types import CryptographicIdentifier, CryptographicSecret
from bovine.utils import get_gmt_now, webfinger_response_json

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
log = logging.getLogger("bovine_peer")
ACTIVITY_JSON = "application/activity+json"


class Peer:
    """The actors served here, their keys and everything received."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.actors: dict[str, dict] = {}
        self.received: list[dict] = []
        self.session: aiohttp.ClientSession | None = None

    def actor_id(self, name: str) -> str:
        return f"{self.base_url}/users/{name}"

    def add_actor(self, name: str) -> dict:
        public, private = generate_rsa_public_private_key()
        actor_id = self.actor_id(name)
        document = Actor(
            id=actor_id,
            preferred_username=name,
            name=f"{name.title()} of bovine",
            summary=f"<p>{name} lives on a bovine server.</p>",
            inbox=f"{actor_id}/inbox",
            outbox=f"{actor_id}/outbox",
            followers=f"{actor_id}/followers",
            following=f"{actor_id}/following",
            public_key=public,
            public_key_name="main-key",
        ).build()
        key_id = f"{actor_id}#main-key"
        self.actors[name] = {
            "document": document,
            "private": private,
            "client": SignedHttpClient(self.session, key_id, private),
        }
        return {
            "username": name,
            "display_name": document["name"],
            "id": actor_id,
            "key_id": key_id,
            "inbox": document["inbox"],
            "handle": f"{name}@{self.base_url.split('://', 1)[1]}",
            "public_key": public,
            "private_key": private,
        }

    def client(self, name: str) -> SignedHttpClient:
        return self.actors[name]["client"]

    async def key_for(self, key_id: str, receiver: str) -> CryptographicIdentifier | None:
        """The signer's key, fetched signed by the receiving actor (servers may require it)."""
        response = await self.client(receiver).get(key_id.split("#", 1)[0])
        if response.status != 200:
            log.warning("key %s: HTTP %s", key_id, response.status)
            return None
        document = json.loads(await response.text())
        return CryptographicIdentifier.from_public_key(document["publicKey"])

    async def check_signature(self, request: web.Request, body: bytes, receiver: str):
        async def retrieve(key_id: str) -> CryptographicIdentifier | None:
            return await self.key_for(key_id, receiver)

        async def read_body() -> bytes:
            return body

        # bovine looks headers up by their lower-case names.
        headers = {name.lower(): value for name, value in request.headers.items()}
        validate = build_validate_http_signature_raw(retrieve)
        return await validate(request.method, str(request.url), headers, read_body)


def routes(peer: Peer) -> web.Application:
    app = web.Application()

    async def record(request: web.Request, **extra) -> dict:
        entry = {
            "method": request.method,
            "path": request.path_qs,
            "headers": dict(request.headers),
            **extra,
        }
        peer.received.append(entry)
        return entry

    async def actor(request: web.Request) -> web.Response:
        await record(request)
        found = peer.actors.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404)
        if found.get("gone"):
            return web.Response(status=410)
        return web.json_response(found["document"], content_type=ACTIVITY_JSON)

    async def inbox(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        entry = await record(request, body=body.decode("utf-8", "replace"))
        if name not in peer.actors:
            return web.Response(status=404)
        try:
            entry["signed_by"] = await peer.check_signature(request, body, name)
        except Exception as error:  # bovine could not check it: recorded as unsigned
            entry["signed_by"], entry["check_error"] = None, repr(error)
        return web.Response(status=202 if entry["signed_by"] else 401)

    async def collection(request: web.Request) -> web.Response:
        await record(request)
        document = {
            "@context": "https://www.w3.org/ns/activitystreams",
            "id": f"{peer.base_url}{request.path}",
            "type": "OrderedCollection",
            "totalItems": 0,
            "orderedItems": [],
        }
        return web.json_response(document, content_type=ACTIVITY_JSON)

    async def webfinger(request: web.Request) -> web.Response:
        await record(request)
        resource = request.query.get("resource", "")
        name = resource.removeprefix("acct:").split("@", 1)[0]
        if name not in peer.actors:
            return web.Response(status=404)
        return web.json_response(
            webfinger_response_json(resource, peer.actor_id(name)),
            content_type="application/jrd+json",
        )

    async def anything(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=404)

    app.router.add_get("/users/{name}", actor)
    app.router.add_post("/users/{name}/inbox", inbox)
    app.router.add_get("/users/{name}/{kind:outbox|followers|following}", collection)
    app.router.add_get("/.well-known/webfinger", webfinger)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


async def response_of(response: aiohttp.ClientResponse) -> dict:
    return {
        "status": response.status,
        "headers": dict(response.headers),
        "body": await response.text(),
    }


def sign(peer: Peer, command: dict) -> dict:
    """The headers bovine's client sends for this request, signed with the actor's key;
    `key_id` may name another key, `date` another time, and without `body` no Digest."""
    name, url, body = command["actor"], command["url"], command.get("body")
    key_id = command.get("key_id") or f"{peer.actor_id(name)}#main-key"
    secret = CryptographicSecret.from_pem(key_id, peer.actors[name]["private"])
    host, target = host_target_from_url(url)
    signature = build_signature(host, command["method"].lower(), target)
    signature = signature.with_field("date", command.get("date") or get_gmt_now())
    if body is not None:
        signature = signature.with_field("digest", content_digest_sha256(body.encode()))
        signature = signature.with_field("content-type", ACTIVITY_JSON)
    return {**signature.headers, "signature": signature.sign_for_http_draft(secret)}


async def handle(peer: Peer, command: dict):
    op = command["op"]
    if op == "actor":
        return peer.add_actor(command["name"])
    if op == "update_actor":
        actor = peer.actors[command["name"]]
        actor["document"].update(command.get("fields", {}))
        actor["gone"] = command.get("gone", False)
        return actor["document"]
    if op == "get":
        async with await peer.client(command["actor"]).get(command["url"]) as response:
            return await response_of(response)
    if op == "post":
        body = json.dumps(command["activity"])
        async with await peer.client(command["actor"]).post(command["url"], body) as response:
            return await response_of(response)
    if op == "sign":
        return sign(peer, command)
    if op == "webfinger":
        found, _ = await lookup_uri_with_webfinger(
            peer.session, "acct:" + command["acct"], command["base"]
        )
        return found
    if op == "received":
        return peer.received
    raise ValueError(f"unknown op {op}")


async def serve(host: str) -> None:
    """Serve on a free port of `host` until stdin closes."""
    peer = Peer("")
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        peer.session = session
        runner = web.AppRunner(routes(peer))
        await runner.setup()
        await web.TCPSite(runner, host, 0).start()
        address, port = runner.addresses[0][:2]
        peer.base_url = f"http://{address}:{port}"
        print(json.dumps({"url": peer.base_url}), flush=True)
        # A command may carry a body of megabytes for the fuzz to sign.
        reader = asyncio.StreamReader(limit=64 << 20)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            try:
                answer = {"result": await handle(peer, json.loads(line))}
            except Exception as error:  # reported to the test, which raises it
                answer = {"error": f"{error!r}\n{traceback.format_exc()}"}
            print(json.dumps(answer), flush=True)
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
