"""Full-text search, on SQLite (FTS5) and, when TEST_DATABASE_URL is set, on PostgreSQL."""

import re
from datetime import datetime

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

import search
from database import db
from importer import ImportedPost, post_key
from importing import add_imported_posts
from microblog import create_app
from models import Post, User
from schema_migrations import init_migrations
from tests.conftest import Client

# `postgres_url` (conftest.py): a PostgreSQL database of our own for the session.


def postgres_app(app, url):
    """An app like the `app` fixture's, on an emptied PostgreSQL database."""
    pg_app = create_app({**app.config, "SQLALCHEMY_DATABASE_URI": url})
    pg_app.test_client_class = Client
    with pg_app.app_context():
        db.drop_all()
        db.session.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        db.session.commit()
    return pg_app


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_app(request, app):
    """The app on each database backend, with its tables created by `db.create_all()`."""
    if request.param == "sqlite":
        yield app
        return
    pg_app = postgres_app(app, request.getfixturevalue("postgres_url"))
    with pg_app.app_context():
        db.create_all()
    yield pg_app
    with pg_app.app_context():
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def searcher(backend_app, password_hash):
    """A client logged in as alice on `backend_app`, who can also add posts."""
    with backend_app.app_context():
        alice = User(username="alice", email="alice@example.com", password_hash=password_hash)
        db.session.add(alice)
        db.session.commit()
    client = backend_app.test_client()
    client.submit("/login", {"username": "alice", "password": "correct horse battery"})
    return Searcher(backend_app, client)


class Searcher:
    def __init__(self, app, client):
        self.app = app
        self.client = client

    def post(self, *bodies) -> list[int]:
        with self.app.app_context():
            alice = db.session.scalar(sa.select(User).where(User.username == "alice"))
            posts = [Post(body=body, author=alice) for body in bodies]
            db.session.add_all(posts)
            db.session.commit()
            return [post.id for post in posts]

    def page(self, query, page=1):
        response = self.client.get("/search", query_string={"q": query, "page": page})
        assert response.status_code == 200
        return response.get_data(as_text=True)

    def ids(self, query, page=1) -> list[int]:
        """Ids of the posts found, in the order shown."""
        return [int(i) for i in re.findall(r'id="post-(\d+)"', self.page(query, page))]

    def check(self):
        with self.app.app_context(), db.engine.begin() as connection:
            search.check_index(connection)


# --- query parsing (no database) ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fts5", "tsquery"),
    [
        ("Hello", '"hello"', "('hello')"),
        ("hello world", '"hello" "world"', "('hello') & ('world')"),
        ("micro*", '"micro" *', "('micro':*)"),
        ('"Hello World"', '"hello world"', "('hello' <-> 'world')"),
        ('say "hello world', '"say" "hello" "world"', "('say') & ('hello') & ('world')"),
        ("a* x", '"a" "x"', "('a') & ('x')"),
        ("NOT AND OR NEAR(a b)", '"not" "and" "or" "near" "a" "b"', None),
        ("o'brien -minus +plus", '"o" "brien" "minus" "plus"', None),
        ("snake_case", '"snake" "case"', None),
        ("dup dup DUP", '"dup"', "('dup')"),
    ],
)
def test_parse_query(text, fts5, tsquery):
    terms = search.parse_query(text)
    assert " ".join(term.fts5() for term in terms) == fts5
    if tsquery:
        assert " & ".join(term.tsquery() for term in terms) == tsquery


@pytest.mark.parametrize("text", ["", "   ", '"', '""', "* * *", "()^:-", "_"])
def test_parse_query_without_words(text):
    assert search.parse_query(text) == []


def test_parse_query_limits_work():
    terms = search.parse_query("word " * 5000)
    assert terms == [search.Term(("word",))]
    terms = search.parse_query(" ".join(f"w{n}" for n in range(100)))
    assert len(terms) == search.MAX_TERMS
    assert len(search.parse_query("x" * 10_000)[0].words[0]) == search.MAX_WORD_LENGTH


def test_highlight_escapes_then_marks():
    terms = search.parse_query("python micro*")
    html = search.highlight("<b>Python</b> & microblogs, not macro <img onerror=x>", terms)
    assert str(html) == (
        "&lt;b&gt;<mark>Python</mark>&lt;/b&gt; &amp; <mark>microblogs</mark>, "
        "not macro &lt;img onerror=x&gt;"
    )


def test_highlight_ignores_accents_and_case():
    html = search.highlight("Café CAFE", search.parse_query("cafe"))
    assert str(html) == "<mark>Café</mark> <mark>CAFE</mark>"


# --- searching, on every backend --------------------------------------------------------


def test_ranking_prefers_the_better_match(searcher):
    weak, strong, other = searcher.post(
        "a long rambling post that mentions python once among many other words",
        "python python",
        "nothing to see here",
    )
    assert searcher.ids("python") == [strong, weak]


def test_results_highlight_terms_and_escape_html(searcher):
    searcher.post("<script>alert('Python')</script> rocks")
    html = searcher.page("python")
    assert "&lt;script&gt;alert(&#39;<mark>Python</mark>&#39;)&lt;/script&gt; rocks" in html
    assert "<script>alert" not in html


def test_all_words_must_match(searcher):
    both, _one = searcher.post("red green", "red blue")
    assert searcher.ids("green red") == [both]


def test_only_the_newest_candidates_are_ranked(searcher, monkeypatch):
    monkeypatch.setattr(search, "CANDIDATES", 2)
    best_but_oldest, newer, newest = searcher.post("tea tea", "tea and a long sentence", "tea?")
    assert searcher.ids("tea") == [newest, newer]


def test_quoted_phrase(searcher):
    phrase, _shuffled = searcher.post("hello world again", "world hello")
    assert searcher.ids('"hello world"') == [phrase]
    assert sorted(searcher.ids("hello world")) == sorted([phrase, _shuffled])


def test_prefix(searcher):
    a, b, _c = searcher.post("microblog", "Microscope here", "macro")
    assert sorted(searcher.ids("micro*")) == [a, b]
    assert searcher.ids("micro") == []
    assert searcher.page("micro*").count("<mark>") == 2


def test_pagination(searcher):
    ids = searcher.post(*[f"pager post {n}" for n in range(5)])
    first, second = searcher.ids("pager"), searcher.ids("pager", page=2)
    assert len(first) == 3 and len(second) == 2
    assert sorted(first + second) == sorted(ids)
    assert "/search?q=pager&amp;page=2" in searcher.page("pager")
    assert searcher.ids("pager", page=99) == []


HOSTILE_QUERIES = [
    '"unbalanced',
    'un"balanced"quotes"',
    "AND",
    "OR OR OR",
    "NOT",
    "NEAR(a b, 2)",
    "body:secret",
    "^start",
    "a* b* c*",
    "*",
    "(((",
    ")",
    "'; DROP TABLE post; --",
    "' OR 1=1 --",
    "\\",
    "&|!<->:*",
    "\x00null byte",
    "emoji 🎉 test",
    "ǅ ǈ İ ß ﬁ",
    "x" * 10_240,
    "word " * 2048,
    '" ' * 5000,
    "-1",
    "%",
    "{}[]",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=lambda q: repr(q[:20]))
def test_hostile_queries_never_fail(searcher, query):
    searcher.post("a harmless post", "secret body")
    html = searcher.page(query)
    assert "Search" in html
    searcher.check()


@pytest.mark.parametrize(
    ("page", "status"),
    [("0", 200), ("-5", 200), ("abc", 200), ("٣", 200), ("99999999999999999999999999", 404)],
)
def test_odd_page_numbers(searcher, page, status):
    searcher.post("paged")
    assert searcher.client.get(f"/search?q=paged&page={page}").status_code == status


def test_empty_query_explains_itself(searcher):
    assert "Type one or more words" in searcher.page("")
    assert "No posts match" in searcher.page("zebra")


def test_search_requires_login(searcher):
    searcher.client.submit("/logout")
    assert searcher.client.get("/search?q=x").status_code == 302


def test_index_follows_inserts_deletes_and_edits(searcher):
    (post_id,) = searcher.post("ephemeral thought")
    assert searcher.ids("ephemeral") == [post_id]
    # Through the app's delete route, like a user would.
    response = searcher.client.submit(f"/post/{post_id}/delete")
    assert response.status_code == 302
    assert searcher.ids("ephemeral") == []
    (edited,) = searcher.post("first draft")
    with searcher.app.app_context():
        db.session.get(Post, edited).body = "second version"
        db.session.commit()
    assert searcher.ids("draft") == []
    assert searcher.ids("second") == [edited]
    searcher.check()


def test_rolled_back_post_leaves_no_trace(searcher):
    with searcher.app.app_context():
        alice = db.session.scalar(sa.select(User).where(User.username == "alice"))
        db.session.add(Post(body="never committed", author=alice))
        db.session.flush()
        db.session.rollback()
    assert searcher.ids("committed") == []
    searcher.check()


def test_deleting_a_user_removes_their_posts_from_the_index(searcher, password_hash):
    with searcher.app.app_context():
        bob = User(username="bob", email="bob@example.com", password_hash=password_hash)
        db.session.add(bob)
        db.session.add(Post(body="bob was here", author=bob))
        db.session.commit()
        # The database's ON DELETE CASCADE removes the posts, not the ORM.
        db.session.execute(sa.delete(User).where(User.username == "bob"))
        db.session.commit()
    assert searcher.ids("here") == []
    searcher.check()


def test_imported_posts_are_indexed_with_the_posts_written_beside_them(searcher):
    moment = datetime(2024, 5, 1, 12)

    def import_posts(*bodies):
        batch = [ImportedPost(body, moment, None, post_key(body, moment)) for body in bodies]
        with searcher.app.app_context():
            alice = db.session.scalar(sa.select(User).where(User.username == "alice"))
            added = add_imported_posts(alice, batch)
            db.session.commit()
            return added

    (before,) = searcher.post("zebra written before")
    assert import_posts("zebra one", "zebra two") == 2
    (between,) = searcher.post("zebra written between")
    # Posts imported before are left out, and indexed once.
    assert import_posts("zebra two", "zebra three", "zebra one") == 1
    for word in ("one", "two", "three"):
        assert len(searcher.ids(word)) == 1, word
    assert searcher.ids("before") == [before] and searcher.ids("between") == [between]
    searcher.check()


def index_exists(connection) -> bool:
    if connection.dialect.name == "sqlite":
        query = "SELECT count(*) FROM sqlite_master WHERE name LIKE 'post_fts%'"
        return connection.exec_driver_sql(query).scalar() >= 4  # table + 3 triggers (+ shadows)
    query = "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_post_search_vector'"
    return connection.exec_driver_sql(query).scalar() == 1


def test_create_all_makes_the_index(backend_app):
    with backend_app.app_context(), db.engine.connect() as connection:
        assert index_exists(connection)


def test_rebuild_command_restores_a_lost_index(searcher):
    sqlite = searcher.app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    expected = searcher.post("rebuild me")
    with searcher.app.app_context(), db.engine.begin() as connection:
        search.drop_index(connection)
        assert not index_exists(connection)
    if sqlite:
        # With the triggers gone, this post is not indexed until the rebuild.
        expected += searcher.post("rebuild you")
    result = searcher.app.test_cli_runner().invoke(args=["search-reindex"])
    assert result.exit_code == 0, result.output
    assert "rebuilt" in result.output
    with searcher.app.app_context(), db.engine.connect() as connection:
        assert index_exists(connection)
    assert sorted(searcher.ids("rebuild")) == expected
    searcher.check()
    # The triggers are back: the next post is indexed as it is written.
    (after,) = searcher.post("rebuild again")
    assert searcher.ids("again") == [after]


def test_rebuild_repairs_a_stale_sqlite_index(app, client, auth):
    auth.login("alice")
    client.submit("/index", {"post": "stale entry"})
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO post_fts(post_fts) VALUES ('delete-all')")
    assert 'id="post-' not in client.get("/search?q=stale").get_data(as_text=True)
    assert app.test_cli_runner().invoke(args=["search-reindex"]).exit_code == 0
    assert 'id="post-' in client.get("/search?q=stale").get_data(as_text=True)


# --- the migration builds the same index -------------------------------------------------


def migrate_and_search(migration_app):
    """Upgrade to the first revision, add a post, upgrade to head: the post is searchable,
    and so are posts written or imported then."""
    init_migrations(migration_app)  # as `flask db` does
    with migration_app.app_context():
        upgrade(revision="386abd61d5b0")
        db.session.execute(sa.text("INSERT INTO \"user\" (username, email) VALUES ('m', 'm@x')"))
        db.session.execute(
            sa.text("INSERT INTO post (body, timestamp, user_id) VALUES ('old news', :t, 1)"),
            {"t": "2024-01-01 00:00:00"},
        )
        db.session.commit()
        upgrade()
        with db.engine.connect() as connection:
            assert index_exists(connection)
        terms = search.parse_query("news")
        assert [p.body for p in search.search_posts(terms, 1, 10).items] == ["old news"]
        db.session.add(Post(body="new news", user_id=1))
        db.session.commit()
        assert len(search.search_posts(terms, 1, 10).items) == 2
        moment = datetime(2024, 2, 1)
        imported = ImportedPost("imported news", moment, None, post_key("imported news", moment))
        assert add_imported_posts(db.session.get_one(User, 1), [imported]) == 1
        db.session.commit()
        assert len(search.search_posts(terms, 1, 10).items) == 3
        with db.engine.begin() as connection:
            search.check_index(connection)


def test_migration_creates_sqlite_index(tmp_path, app):
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    migrate_and_search(create_app({**app.config, "SQLALCHEMY_DATABASE_URI": url}))


def test_migration_creates_postgresql_index(app, postgres_url):
    pg_app = postgres_app(app, postgres_url)
    try:
        migrate_and_search(pg_app)
    finally:
        with pg_app.app_context():
            db.drop_all()
            db.session.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
            db.session.commit()
            db.engine.dispose()


def test_rank_prefers_repetition_and_short_posts_then_newest():
    terms = search.parse_query("python")
    candidates = [
        (1, "python in a fairly long post with many other words around it"),
        (2, "Python python"),
        (3, "python rocks"),
        (4, "python rocks"),
    ]
    assert search.rank(candidates, terms) == [2, 4, 3, 1]


def test_rank_counts_phrases_and_prefixes():
    assert search.rank(
        [(1, "world hello"), (2, "hello world")], search.parse_query('"hello world"')
    ) == [2, 1]
    assert search.rank(
        [(1, "micro"), (2, "microblog micrometer")], search.parse_query("micro*")
    ) == [2, 1]
