"""Benchmark: requests/s and CPU per request for /index, /explore and /user/<name> under
concurrent load, against a floor.

Seeds 200 users × 20 follows and a user with 10,000 posts, starts gunicorn on 127.0.0.1
and hammers each page from 16 keep-alive connections. The CPU time per request is what the
gunicorn workers spent (their /proc counters) divided by the requests they answered.

The floor of each page (`/floor/...`, served by the same gunicorn from `floor_app()`) runs
the same queries and writes the same fields of the same posts through a plain template: no
macros, no `url_for`, no filters. What a page costs above its floor is its rendering.

`--sparse` adds a viewer who follows one user with a few posts among all the others (the
home timeline of someone who follows few people); `--heavy-posts 200000` makes that hurt.
Run with `./run.sh bench`.
"""

import argparse
import os
import random
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, build_opener

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.helpers import add_posts, add_user, follow  # noqa: E402 (needs the project on sys.path)
from tests.live import CSRF_FIELD, server_env, start_gunicorn, stop_process  # noqa: E402

PASSWORD = "benchmark password"
SPARSE_POSTS = 20  # the sparse viewer's one followed user has this many posts
ROUNDS = 5  # --in-process repeats each page's N requests this often and keeps the least
PAGES = ("/index", "/explore", "/user/{heavy}", "/index?page=40")
# The floor of each page: see floor_app().
FLOORS = {
    "/index": "/floor/index",
    "/explore": "/floor/explore",
    "/user/{heavy}": "/floor/user/{heavy}",
}

FLOOR_TEMPLATE = """<!doctype html><html><head><title>{{ title }}</title></head><body>
<p>{{ current_user.username }} {{ current_user.id }} {{ unread.unread_messages }}
{{ unread.unread_mentions }} {{ unread.has_task_banners }} {{ csrf_token() }}</p>
{% if user %}<p>{{ user.username }} {{ user.about_me }} {{ user.last_seen }} {{ followers }}
{{ following }} {{ is_following }} {{ hidden }}</p>{% endif %}
{% for post in posts %}<div id="post-{{ post.id }}"><p>{{ post.author.id }}
{{ post.author.username }} {{ post.author.avatar_version }} {{ post.timestamp }}</p>
<p>{{ post.language }} {{ post.user_id }}</p><div>{{ post.body }}</div></div>
{% endfor %}<p>{{ newer }} {{ older }}</p></body></html>"""


def floor_app():
    """The site plus `/floor/...`: each page's queries, written out by FLOOR_TEMPLATE."""
    import sqlalchemy as sa
    from flask import Blueprint, render_template
    from flask_login import current_user, login_required

    import blocks
    import microblog
    from database import db
    from follows import Follows
    from forms import PostForm
    from models import Post, User
    from page_frame import frame_state
    from timeline import Timeline
    from web import page_links, paginate

    floor = Blueprint("floor", __name__)
    template = []  # compiled once, as the site's template files are

    def write(posts, endpoint, **context):
        newer, older = page_links(posts, endpoint, **context.pop("url_args", {}))
        unread = frame_state(current_user)
        if not template:
            template.append(app.jinja_env.from_string(FLOOR_TEMPLATE))
        return render_template(
            template[0], posts=posts, newer=newer, older=older, unread=unread, **context
        )

    @floor.route("/floor/index")
    @login_required
    def index():
        posts = paginate(Timeline(current_user).posts())
        return write(posts, "posts.index", title="Home", form=PostForm())

    @floor.route("/floor/explore")
    @login_required
    def explore():
        query = (
            sa.select(Post)
            .where(blocks.not_hidden_from(current_user, Post.user_id))
            .options(sa.orm.joinedload(Post.author))
            .order_by(Post.timestamp.desc(), Post.id.desc())
        )
        return write(paginate(query), "posts.explore", title="Explore")

    @floor.route("/floor/user/<username>")
    @login_required
    def user(username):
        user = db.first_or_404(User.named(username))
        posts = paginate(user.posts_select())
        followers, following = Follows(user).counts()
        other = user != current_user
        return write(
            posts,
            "people.user",
            url_args={"username": user.username},
            title=user.username,
            user=user,
            followers=followers,
            following=following,
            is_following=other and Follows(current_user).is_following(user),
            hidden=other and blocks.hidden_from(current_user, user),
        )

    app = microblog.create_app()
    app.register_blueprint(floor)
    return app


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's worker processes."""
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [int(pid) for pid in f.read().split()]


def cpu_seconds(pids) -> float:
    """User + system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def seed(data_dir: Path, users: int, follows: int, heavy_posts: int, posts_each: int, sparse: bool):
    """Fill a fresh database; returns the heavy user's name and the number of posts. With
    `sparse`, also "sparse", who follows only "sparse-friend" (SPARSE_POSTS posts)."""
    from werkzeug.security import generate_password_hash

    from database import db
    from microblog import create_app

    app = create_app({"DATA_DIR": str(data_dir)})
    password_hash = generate_password_hash(PASSWORD)
    rng = random.Random(42)
    start = datetime(2024, 1, 1)
    with app.app_context():
        db.create_all()
    ids = [add_user(app, f"user{i}", password_hash) for i in range(1, users + 1)]
    for user_id in ids:
        follow(app, user_id, *(f for f in rng.sample(ids, follows) if f != user_id))
    add_posts(app, ids[0], heavy_posts, body="heavy post {i}", start=start)
    for user_id in ids[1:]:
        moments = [start + timedelta(minutes=rng.randrange(heavy_posts)) for _ in range(posts_each)]
        add_posts(app, user_id, posts_each, body=f"post {{i}} of user{user_id}", timestamps=moments)
    total = heavy_posts + (users - 1) * posts_each
    if sparse:
        loner, friend = add_user(app, "sparse", password_hash), add_user(app, "sparse-friend", "")
        follow(app, loner, friend)
        moments = [
            start + timedelta(minutes=rng.randrange(heavy_posts)) for _ in range(SPARSE_POSTS)
        ]
        add_posts(app, friend, SPARSE_POSTS, body="a rare post {i}", timestamps=moments)
        total += SPARSE_POSTS
    with app.app_context():
        db.engine.dispose()
    return "user1", total


def login(base: str, username: str) -> str:
    """Log in through the real form; returns the Cookie header value."""
    jar = CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))
    html = opener.open(f"{base}/login").read().decode()
    token = CSRF_FIELD.search(html).group(1)
    form = urlencode({"csrf_token": token, "username": username, "password": PASSWORD})
    opener.open(f"{base}/login", data=form.encode()).read()
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def hammer(port: int, path: str, cookie: str, connections: int, seconds: float, workers=()):
    """Send GETs from `connections` keep-alive connections for `seconds`; `cpu_ms` is the
    CPU time the `workers` (pids) spent per request meanwhile, `client_ms` this process's.

    The client shares the machine's cores with the server, so it is kept lean (as wrk is): each
    request's bytes are made once, and an answer is read by its Content-Length."""
    latencies, errors = [], []
    stop_at = time.perf_counter() + seconds
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
    ).encode()

    def worker():
        mine = []
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            while time.perf_counter() < stop_at:
                began = time.perf_counter()
                conn.sendall(request)
                status = read_response(conn)
                if status != 200:
                    errors.append(status)
                mine.append(time.perf_counter() - began)
        latencies.extend(mine)

    began, cpu_before = time.perf_counter(), cpu_seconds(workers)
    client_before = time.process_time()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - began, cpu_seconds(workers) - cpu_before
    client = time.process_time() - client_before
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
        "requests": len(latencies),
        "errors": len(errors),
        "cpu_ms": cpu / len(latencies) * 1000,
        "client_ms": client / len(latencies) * 1000,
    }


def read_response(conn: socket.socket) -> int:
    """Read one HTTP/1.1 response with a Content-Length from `conn`; returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        body += chunk
    return int(head.split(b" ", 2)[1])


def in_process(data_dir: Path, runs, repeat: int) -> None:
    """Each page's CPU time per request through the test client: no server, no client
    threads sharing the cores, so the figure holds still on a busy machine."""
    os.environ.update(server_env(data_dir))
    app = floor_app()
    clients = {}
    for viewer, username, path in runs:
        if username not in clients:
            clients[username] = client = app.test_client()
            token = CSRF_FIELD.search(client.get("/login").get_data(as_text=True)).group(1)
            form = {"csrf_token": token, "username": username, "password": PASSWORD}
            client.post("/login", data=form)
        client = clients[username]
        for _ in range(5):  # warm up
            assert client.get(path).status_code == 200, path
        rounds = []
        for _ in range(ROUNDS):
            began = time.process_time()
            for _ in range(repeat):
                client.get(path)
            rounds.append((time.process_time() - began) / repeat * 1000)
        # The least: what the page costs when other processes leave the core alone.
        cpu_ms = min(rounds)
        print(f"{viewer:10} GET {path:19} CPU {cpu_ms:5.1f} ms/req in-process")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--heavy-posts", type=int, default=10_000, help="user1's posts")
    parser.add_argument("--sparse", action="store_true", help="also time a sparse home page")
    parser.add_argument("--only-sparse", action="store_true", help="time only that page")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor pages")
    parser.add_argument(
        "--in-process",
        type=int,
        metavar="N",
        help=f"instead: N requests each in this process, {ROUNDS} times",
    )
    args = parser.parse_args()
    args.sparse = args.sparse or args.only_sparse

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        heavy, total = seed(data_dir, 200, 20, args.heavy_posts, 20, args.sparse)
        print(f"seeded 200 users x 20 follows, {total} posts ({heavy} has {args.heavy_posts})")
        runs = []
        if not args.only_sparse:
            for viewer, username in {"heavy user": heavy, "light user": "user150"}.items():
                runs += [(viewer, username, page.format(heavy=heavy)) for page in PAGES]
            if not args.no_floor:
                runs += [
                    ("heavy user", heavy, page.format(heavy=heavy)) for page in FLOORS.values()
                ]
        if args.sparse:
            runs.append(("sparse", "sparse", "/index"))
        if args.in_process:
            in_process(data_dir, runs, args.in_process)
            return
        options = ("--workers", str(args.workers), "--threads", "4", "--log-level", "warning")
        app = "tests.bench_timeline:floor_app()"
        server = start_gunicorn(data_dir / "web.log", server_env(data_dir), *options, app=app)
        try:
            base = server.url
            port = urlsplit(base).port
            workers = worker_pids(server.pid)
            cookies = {}
            for viewer, username, path in runs:
                cookie = cookies.get(username) or cookies.setdefault(
                    username, login(base, username)
                )
                hammer(port, path, cookie, 4, 1)  # warm up
                r = hammer(port, path, cookie, args.connections, args.seconds, workers)
                print(
                    f"{viewer:10} GET {path:19} {r['rps']:7.1f} req/s  "
                    f"CPU {r['cpu_ms']:5.1f} ms/req (client {r['client_ms']:4.1f})  "
                    f"p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  "
                    f"({r['requests']} requests, {r['errors']} errors)"
                )
        finally:
            stop_process(server)


if __name__ == "__main__":
    main()
