"""Benchmark: one-word searches over 1,000,000 posts (target: < 50 ms server time).

    python tests/bench_search.py [--posts N] [--rebuild-db]

Builds (once, then reuses) a SQLite database of synthetic posts whose words follow a Zipf
distribution, like real text, then times GET /search in-process (the server's time, without the
network) for words of very different frequencies, and prints the figures. With
TEST_DATABASE_URL set it does the same on PostgreSQL, in a database of its own that it drops.
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

import search  # noqa: E402
from database import db
from microblog import create_app  # noqa: E402
from models import Post, User
from tests.live import CSRF_FIELD  # noqa: E402

VOCABULARY = 50_000
USERS = 1_000
BATCH = 50_000
RUNS = 15
TARGET_MS = 50
PASSWORD = "benchmark password"
# Word ranks to query: from the commonest word (in about half the posts) to a rare one.
RANKS = [1, 10, 100, 1_000, 10_000]


def word(rank: int) -> str:
    """A pronounceable made-up word per rank; lower ranks are more frequent."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su"]
    parts = []
    n = rank
    while True:
        parts.append(syllables[n % 10])
        n //= 10
        if not n:
            return "".join(parts) + "x"


def posts(count: int, seed: int = 1):
    """(body, timestamp, user_id) rows, deterministic for a seed."""
    rng = random.Random(seed)
    words = [word(rank) for rank in range(1, VOCABULARY + 1)]
    cumulative = list(accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))
    start = datetime(2020, 1, 1)
    for n in range(count):
        body = " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(6, 18)))
        yield body[:140], start + timedelta(seconds=30 * n), rng.randint(1, USERS)


def fill(app, count: int) -> None:
    """Users and `count` posts, written in large transactions; the index follows."""
    with app.app_context():
        db.create_all()
        password_hash = generate_password_hash(PASSWORD)
        db.session.execute(
            sa.insert(User),
            [
                {
                    "username": f"user{n}",
                    "email": f"user{n}@example.com",
                    "password_hash": password_hash,
                }
                for n in range(1, USERS + 1)
            ],
        )
        db.session.commit()
        # Bulk load the way an admin would: without the index, then `flask search-reindex`.
        with db.engine.begin() as connection:
            search.drop_index(connection)
        rows = []
        started = time.perf_counter()
        for n, (body, moment, user_id) in enumerate(posts(count), 1):
            rows.append({"body": body, "timestamp": moment, "user_id": user_id})
            if len(rows) == BATCH or n == count:
                db.session.execute(sa.insert(Post.__table__), rows)
                db.session.commit()
                rows = []
                print(f"  {n:>9,} posts  {time.perf_counter() - started:6.1f} s", file=sys.stderr)
        started = time.perf_counter()
        result = app.test_cli_runner().invoke(args=["search-reindex"])
        assert result.exit_code == 0, result.output
        print(f"flask search-reindex over {count:,} posts: {time.perf_counter() - started:.1f} s")
        if db.engine.dialect.name == "postgresql":
            # What autovacuum would have done by the time anyone searches.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE post")


def document_frequency(app, term: str) -> int:
    """How many posts contain the word, asked of the search index itself."""
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            query = "SELECT count(*) FROM post_fts WHERE post_fts MATCH :q"
            return db.session.scalar(sa.text(query), {"q": f'"{term}"'})
        query = "SELECT count(*) FROM post WHERE search_vector @@ to_tsquery('simple', :q)"
        return db.session.scalar(sa.text(query), {"q": term})


def median_ms(action) -> tuple[float, float]:
    """Median and worst wall time of `action()` over RUNS runs, in milliseconds."""
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), max(timings)


def time_searches(app, label: str) -> bool:
    """Print the server time of /search per query; True if one-word medians beat the target.

    "request" is the whole GET /search in-process (query, ranking, rendering 25 posts);
    "search" is search_posts() alone (the database query and the ranking).
    """
    client = app.test_client()
    login_page = client.get("/login").get_data(as_text=True)
    token = CSRF_FIELD.search(login_page).group(1)
    client.post("/login", data={"username": "user1", "password": PASSWORD, "csrf_token": token})
    ok = True
    print(f"\n{label}: {RUNS} runs per query, in-process, milliseconds")
    header = ("query", "posts with it", "request median", "max", "search median")
    print("{:>14} {:>14} {:>15} {:>7} {:>14}".format(*header))
    queries = [(word(rank), True) for rank in RANKS]
    queries += [(q, False) for q in ["kalox lox", '"kax lox"', "mik*", "kakal*", "kaloxx"]]
    for query, one_word in queries:

        def request(query=query):
            assert client.get("/search", query_string={"q": query}).status_code == 200

        def search_only(query=query):
            with app.app_context():
                search.search_posts(search.parse_query(query), 1, 25)

        median, worst = median_ms(request)
        search_median, _ = median_ms(search_only)
        if one_word:
            ok &= median < TARGET_MS
        frequency = f"{document_frequency(app, query):,}" if one_word else ""
        print(f"{query:>14} {frequency:>14} {median:>15.1f} {worst:>7.1f} {search_median:>14.1f}")
    return ok


def app_for(url: str, data_dir: str):
    return create_app({"DATA_DIR": data_dir, "SQLALCHEMY_DATABASE_URI": url, "POSTS_PER_PAGE": 25})


def bench_sqlite(count: int, rebuild: bool) -> bool:
    cache = Path(tempfile.gettempdir()) / "microblog-bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"search-{count}.db"
    if rebuild and path.exists():
        path.unlink()
    app = app_for(f"sqlite:///{path}", str(cache))
    if not path.exists() or path.stat().st_size == 0:
        print(f"Building {path} with {count:,} posts (kept for the next run)", file=sys.stderr)
        fill(app, count)
    with app.app_context():
        db.create_all()  # a cache built by an older version lacks the newer tables
        posts_in_db = db.session.scalar(sa.select(sa.func.count()).select_from(Post))
        started = time.perf_counter()
        with db.engine.begin() as connection:
            search.check_index(connection)
        check_s = time.perf_counter() - started
    print(f"SQLite FTS5 index integrity-check: {check_s:.1f} s")
    return time_searches(app, f"SQLite FTS5, {posts_in_db:,} posts")


def bench_postgresql(base_url: str, count: int) -> bool:
    name = f"microblog_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(sa.make_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(base_url).set(database=name).render_as_string(hide_password=False)
        app = app_for(url, tempfile.mkdtemp())
        print(f"Filling PostgreSQL database {name} with {count:,} posts", file=sys.stderr)
        fill(app, count)
        ok = time_searches(app, f"PostgreSQL tsvector + GIN, {count:,} posts")
        with app.app_context():
            db.engine.dispose()
        return ok
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--rebuild-db", action="store_true", help="regenerate the SQLite data")
    parser.add_argument("--no-postgresql", action="store_true")
    args = parser.parse_args()
    # Timings are wall-clock: other work on the machine shows up in them.
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    ok = bench_sqlite(args.posts, args.rebuild_db)
    base_url = os.environ.get("TEST_DATABASE_URL")
    if base_url and not args.no_postgresql:
        ok &= bench_postgresql(base_url, args.posts)
    verdict = "met" if ok else "NOT met"
    print(f"\nTarget: median request < {TARGET_MS} ms for every one-word query: {verdict}")
    print(f"Load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
