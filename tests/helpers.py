"""Plain helpers for the tests and the benchmarks: users, posts and follows written straight
into the database, what an export of a user's posts must contain, and archives to import
(our export, a Mastodon outbox) written as a stream.

No pytest here, so that the benchmarks can import it too; the fixtures are in conftest.py and
the processes (gunicorn, huey_consumer) in live.py.
"""

import io
import json
import struct
import threading
import zipfile
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice

import sqlalchemy as sa

import fedsign
from database import db, isoformat_utc, utcnow
from follows import Follows
from models import POST_MAX, Post, User, followers, text_length

MINUTE = timedelta(minutes=1)
# A `body` template for add_posts that an export must escape: non-ASCII, quotes, markup.
AWKWARD_BODY = 'post {i} ünïcode "quoted" </script>'
EMOJI = "\N{GRINNING FACE}"  # astral: two UTF-16 units, one character
ACUTE = "e\N{COMBINING ACUTE ACCENT}"  # é as two code points: two characters
INSERT_BATCH = 10_000  # rows per executemany: a million posts never sit in memory at once


def at_the_limit(extra: int = 0) -> str:
    """POST_MAX (+ `extra`) characters as a browser sends them: CRLFs, emoji, a combining
    mark; far more UTF-16 units and bytes than characters."""
    head = f"{EMOJI}\r\n{ACUTE}\r\n{EMOJI}{EMOJI}\r\n"
    return head + "z" * (POST_MAX + extra - text_length(head))


def add_user(app, username, password_hash, email=None, about_me=None) -> int:
    """Create a user (with an already hashed password: hashing is slow); returns its id."""
    with app.app_context():
        user = User(username=username, email=email or f"{username}@example.com")
        user.password_hash = password_hash
        user.about_me = about_me
        db.session.add(user)
        db.session.commit()
        return user.id


def add_posts(
    app,
    user_id,
    bodies_or_count,
    *,
    body="post {i}",
    start=None,
    step=MINUTE,
    timestamps=None,
    newest_first=False,
    language=None,
) -> None:
    """Give a user posts, oldest first, `step` apart; the newest is `step` before now
    unless `start` says when the first one is.

    `bodies_or_count` is a list of bodies, or a number of posts whose bodies come from the
    `body` template (`{i}` is the post's index: "post 0", "post 1", …). `timestamps` gives
    each post its own time instead of `start`/`step`. `newest_first` inserts the rows in
    reverse, so that only a query that sorts by time finds them in order. `language` is
    stored as each post's (None: not looked at yet, as after an upgrade).
    """
    if isinstance(bodies_or_count, int):
        count = bodies_or_count
        bodies = (body.format(i=i) for i in range(count))
    else:
        bodies = list(bodies_or_count)
        count = len(bodies)
    if timestamps is None:
        first = start if start is not None else utcnow() - step * count
        timestamps = (first + step * i for i in range(count))
    rows = (
        {"body": text, "timestamp": moment, "user_id": user_id, "language": language}
        for text, moment in zip(bodies, timestamps, strict=True)
    )
    if newest_first:
        rows = reversed(list(rows))
    with app.app_context():
        while batch := list(islice(rows, INSERT_BATCH)):
            db.session.execute(sa.insert(Post.__table__), batch)
        db.session.commit()


def follow(app, follower_id, *followed_ids) -> None:
    """`follower_id` follows each of `followed_ids`."""
    with app.app_context():
        db.session.execute(
            sa.insert(followers),
            [{"follower_id": follower_id, "followed_id": followed} for followed in followed_ids],
        )
        db.session.commit()


def exported_posts(app, user_id) -> list:
    """A user's posts as an export must list them: oldest first, `body` and UTC `timestamp`."""
    with app.app_context():
        query = (
            sa.select(Post.body, Post.timestamp)
            .where(Post.user_id == user_id)
            .order_by(Post.timestamp, Post.id)
        )
        return [{"body": b, "timestamp": isoformat_utc(t)} for b, t in db.session.execute(query)]


def export_document(app, user_id) -> dict:
    """The whole export a user's "export your posts" must write (format version 2)."""
    with app.app_context():
        user = db.session.get_one(User, user_id)
        query = (
            sa.select(Post.id, Post.body, Post.timestamp)
            .where(Post.user_id == user_id)
            .order_by(Post.timestamp, Post.id)
        )
        rows = db.session.execute(query)
        posts = [{"id": i, "body": b, "timestamp": isoformat_utc(t)} for i, b, t in rows]
        return {
            "version": 2,
            "profile": {"username": user.username, "about_me": user.about_me, "avatar": None},
            "posts": posts,
            "following": Follows(user).following_usernames(),
        }


def assert_json_error(response, status: int) -> None:
    """`response` is the API's JSON error for `status`, with `Allow` on a 405."""
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = response.json() if callable(response.json) else response.json
    assert set(body) >= {"error", "message"}
    if status == 405:
        assert {"GET", "POST"} & set(response.headers["Allow"].replace(" ", "").split(","))


# --- archives to import ---------------------------------------------------------------------

ACTOR = "https://mastodon.example/users/alice"
AS_PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def write_export_file(path, posts, **fields) -> None:
    """Our export at `path`: `{"posts": [...]}` plus `fields` beside it, written one post at
    a time so that a million posts never sit in memory (`posts` may be a generator)."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("{")
        for name, value in fields.items():
            out.write(f"{json.dumps(name)}: {json.dumps(value)}, ")
        _write_list(out, "posts", posts)
        out.write("}\n")


def write_outbox(path, items) -> None:
    """A Mastodon outbox.json at `path`, shaped as Mastodon writes it: the collection's
    fields first, `orderedItems` last, items written one at a time."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(
            '{"@context": ["https://www.w3.org/ns/activitystreams", '
            '{"ostatus": "http://ostatus.org#", "sensitive": "as:sensitive"}], '
            '"id": "outbox.json", "type": "OrderedCollection", "totalItems": 0, '
        )
        _write_list(out, "orderedItems", items)
        out.write("}\n")


def _write_list(out, name, items) -> None:
    out.write(f'"{name}": [')
    for i, item in enumerate(items):
        out.write(("\n" if i == 0 else ",\n") + json.dumps(item, ensure_ascii=False))
    out.write("\n]")


def toot(
    number,
    content,
    published="2019-04-07T10:13:54Z",
    in_reply_to=None,
    to=(AS_PUBLIC,),
    cc=(f"{ACTOR}/followers",),
    actor=ACTOR,
    summary=None,
) -> dict:
    """A `Create` activity of a `Note`, as in a Mastodon archive's outbox."""
    note_id = f"{actor}/statuses/{number}"
    return {
        "id": f"{note_id}/activity",
        "type": "Create",
        "actor": actor,
        "published": published,
        "to": list(to),
        "cc": list(cc),
        "object": {
            "id": note_id,
            "type": "Note",
            "summary": summary,
            "inReplyTo": in_reply_to,
            "published": published,
            "url": f"https://mastodon.example/@alice/{number}",
            "attributedTo": actor,
            "to": list(to),
            "cc": list(cc),
            "sensitive": summary is not None,
            "content": content,
            "contentMap": {"en": content},
            "attachment": [],
            "tag": [],
            "replies": {"id": f"{note_id}/replies", "type": "Collection", "first": {}},
        },
    }


def boost(number, of="https://elsewhere.example/users/bob/statuses/1") -> dict:
    """An `Announce` activity (a boost), whose object is only the boosted toot's id."""
    return {
        "id": f"{ACTOR}/statuses/{number}/activity",
        "type": "Announce",
        "actor": ACTOR,
        "published": "2019-04-08T10:00:00Z",
        "to": [AS_PUBLIC],
        "cc": [f"{ACTOR}/followers"],
        "object": of,
    }


def outbox_zip(items) -> bytes:
    """A Mastodon archive holding only its outbox.json (of `items`), as zipfile writes it."""
    outbox = io.StringIO()
    outbox.write('{"type": "OrderedCollection", ')
    _write_list(outbox, "orderedItems", items)
    outbox.write("}")
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("outbox.json", outbox.getvalue())
    return packed.getvalue()


END_RECORD = struct.Struct("<4s4H2LH")  # a zip's end of central directory record
# A central directory entry for a one-letter, empty, stored file whose data is at offset 0.
TINY_ENTRY = struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0,
                         0, 0, 0, 1, 0, 0, 0, 0, 0, 0) + b"a"  # fmt: skip


def with_end_record(data: bytes, **changes) -> bytes:
    """A zip without a comment (as zipfile writes it) whose end record says something else:
    `entries` (both counts), `size` or `offset` of the central directory."""
    fields = list(END_RECORD.unpack_from(data, len(data) - END_RECORD.size))
    for name, at in (("size", 5), ("offset", 6)):
        fields[at] = changes.get(name, fields[at])
    if "entries" in changes:
        fields[3] = fields[4] = changes["entries"]
    return data[: -END_RECORD.size] + END_RECORD.pack(*fields)


def with_extra_entries(data: bytes, count: int, claimed: int | None = None) -> bytes:
    """A zip (as zipfile writes it) with `count` more tiny entries at the end of its central
    directory; its end record counts them, or says it holds `claimed` files."""
    end = len(data) - END_RECORD.size
    entries, size = END_RECORD.unpack_from(data, end)[4:6]
    grown = data[:end] + TINY_ENTRY * count + data[end:]
    claim = entries + count if claimed is None else claimed
    return with_end_record(grown, entries=claim, size=size + len(TINY_ENTRY) * count)


class TranslationServer:
    """A LibreTranslate stand-in on 127.0.0.1 (a free port), served from a thread:
    `POST /translate` and `GET /languages`, as LibreTranslate answers them.

    `mode` says how /translate answers: "ok" (the text, marked with the target language:
    "[en] hola"), "fail" (500 with LibreTranslate's `{"error": ...}`), "slow" (no answer
    until the server stops, or `release` is set), "drip" (a good answer, one byte every
    DRIP_SECONDS from its status line on), "drip-body" (the headers at once, then the body
    dripped), "huge" (an answer that never ends) or "redirect" (`redirect_status`, to
    `redirect_to`). `requests` keeps each JSON body received, `hits` each "METHOD /path".
    """

    DRIP_SECONDS = 0.2

    def __init__(self, mode: str = "ok"):
        import threading
        from http.server import ThreadingHTTPServer

        self.mode = mode
        self.requests: list[dict] = []
        self.hits: list[str] = []
        self.redirect_to = ""
        self.redirect_status = 302
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self):
        from http.server import BaseHTTPRequestHandler

        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, payload) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def drip(self, data: bytes) -> None:
                """Send `data` a byte at a time (until the server stops or the client leaves)."""
                try:
                    for byte in data:
                        if fake.release.wait(fake.DRIP_SECONDS):
                            return
                        self.wfile.write(bytes([byte]))
                except OSError:
                    pass  # the client gave up, as it should
                self.close_connection = True

            def dripped_answer(self, headers_too: bool) -> None:
                body = json.dumps({"translatedText": "at last"}).encode()
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                if headers_too:
                    return self.drip(head + body)
                self.wfile.write(head)
                self.drip(body)

            def endless_answer(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(b'{"translatedText": "')
                    while not fake.release.is_set():
                        self.wfile.write(b"x" * 65536)
                except OSError:
                    pass  # the client stopped reading, as it should
                self.close_connection = True

            def redirect(self) -> None:
                self.send_response(fake.redirect_status)
                self.send_header("Location", fake.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                fake.hits.append(f"GET {self.path}")
                if self.path != "/languages":
                    return self.reply(404, {"error": "Not Found"})
                codes = [("en", "English"), ("es", "Spanish"), ("de", "German")]
                languages = [
                    {"code": code, "name": name, "targets": ["de", "en", "es"]}
                    for code, name in codes
                ]
                return self.reply(200, languages)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(payload)
                fake.hits.append(f"POST {self.path}")
                if self.path != "/translate":
                    return self.reply(404, {"error": "Not Found"})
                if fake.mode in ("drip", "drip-body"):
                    return self.dripped_answer(headers_too=fake.mode == "drip")
                if fake.mode == "huge":
                    return self.endless_answer()
                if fake.mode == "redirect":
                    return self.redirect()
                if fake.mode == "fail":
                    return self.reply(500, {"error": "Cannot translate text: model not loaded"})
                if fake.mode == "slow":
                    fake.release.wait(30)
                    return self.reply(200, {"translatedText": "too late"})
                text = f"[{payload['target']}] {payload['q']}"
                return self.reply(200, {"translatedText": text})

        return Handler

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


# --- another server, for federation tests ---------------------------------------------


class Remote:
    """A tiny server on 127.0.0.1: `routes` maps a path to (status, headers, body)."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.requests: list[tuple[str, str, dict, bytes]] = []
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                remote.requests.append((self.command, self.path, dict(self.headers), body))
                status, headers, data = remote.routes.get(self.path, (404, {}, b"no"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.base = f"http://{self.host}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json(self, path, document, status=200):
        self.routes[path] = (
            status,
            {"Content-Type": "application/activity+json"},
            json.dumps(document).encode(),
        )


def actor_document(base, name="ann", public=None):
    """An actor as a Mastodon-like server serves it (a new key unless `public` is given)."""
    public = public or fedsign.new_key_pair()[1]
    return {
        "@context": ["https://www.w3.org/ns/activitystreams"],
        "id": f"{base}/users/{name}",
        "type": "Person",
        "preferredUsername": name,
        "name": "Ann <b>Example</b>",
        "summary": "<p>Hi <script>alert(1)</script><a href='https://x.example'>me</a></p>",
        "inbox": f"{base}/users/{name}/inbox",
        "outbox": f"{base}/users/{name}/outbox",
        "followers": f"{base}/users/{name}/followers",
        "endpoints": {"sharedInbox": f"{base}/inbox"},
        "url": f"{base}/@{name}",
        "icon": {"type": "Image", "url": f"{base}/ann.png"},
        "publicKey": {
            "id": f"{base}/users/{name}#main-key",
            "owner": f"{base}/users/{name}",
            "publicKeyPem": public,
        },
    }
