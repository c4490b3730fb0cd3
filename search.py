"""Full-text search over posts: SQLite FTS5 by default, PostgreSQL tsvector + GIN.

User input never reaches the database as query syntax: `parse_query` keeps only words,
"quoted phrases" and `prefix*` terms, and each backend renders them as a quoted expression.
The index follows the `post` table inside the same transaction (FTS5 triggers on SQLite, a
generated column on PostgreSQL), so inserts and deletes need no extra code; except that on
SQLite an import's batches index themselves (`importing.add_imported_posts_json`), in bulk.
"""

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import click
import sqlalchemy as sa
import sqlalchemy.orm as so
from flask.cli import with_appcontext
from markupsafe import Markup, escape

from database import Page, db
from models import Post

MAX_TERMS = 8  # every term must match: more than this finds nothing in a 140-character post
MAX_WORD_LENGTH = 64
MAX_QUERY_LENGTH = 512  # characters looked at; the rest of a pasted essay is ignored
MIN_PREFIX_LENGTH = 2  # `a*` would match most of the table
MAX_PAGE = 1000

# A word is a run of letters and digits, as FTS5's unicode61 tokenizer sees it.
WORD = re.compile(r"[^\W_]+")
TOKEN = re.compile(r'"([^"]*)"|([^\W_]+)(\*?)')

# --- schema ---------------------------------------------------------------------

SQLITE_SCHEMA = [
    # External content: the text lives once, in `post`; FTS5 keeps only the index.
    "CREATE VIRTUAL TABLE IF NOT EXISTS post_fts USING fts5("
    "body, content='post', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    # Not for imported rows: `add_imported_posts_json` indexes each of its batches in one
    # statement, several times faster than this trigger once per row.
    "CREATE TRIGGER IF NOT EXISTS post_fts_insert AFTER INSERT ON post "
    "WHEN new.import_key IS NULL BEGIN "
    "INSERT INTO post_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS post_fts_delete AFTER DELETE ON post BEGIN "
    "INSERT INTO post_fts(post_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER IF NOT EXISTS post_fts_update AFTER UPDATE OF body ON post BEGIN "
    "INSERT INTO post_fts(post_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO post_fts(rowid, body) VALUES (new.id, new.body); END",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS post_fts_insert",
    "DROP TRIGGER IF EXISTS post_fts_delete",
    "DROP TRIGGER IF EXISTS post_fts_update",
    "DROP TABLE IF EXISTS post_fts",
]
# PostgreSQL: a stored, generated tsvector column with a GIN index. Stored, so that neither
# the index recheck nor ranking re-parses the text, and so that the planner can afford to walk
# the primary key backwards for a common word. `'simple'`: no stemming and no stop words, like
# the FTS5 side; punctuation becomes spaces first, so words are runs of letters and digits as
# in FTS5 (PostgreSQL's own parser would drop text between <tags> and keep e-mails whole).
PG_SCHEMA = [
    "ALTER TABLE post ADD COLUMN IF NOT EXISTS search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple', regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) STORED",
    "CREATE INDEX IF NOT EXISTS ix_post_search_vector ON post USING gin (search_vector)",
]
PG_DROP = [
    "DROP INDEX IF EXISTS ix_post_search_vector",
    "ALTER TABLE post DROP COLUMN IF EXISTS search_vector",
]


def _statements(dialect: str, sqlite: list[str], postgresql: list[str]) -> list[str]:
    return {"sqlite": sqlite, "postgresql": postgresql}.get(dialect, [])


def create_index(connection: sa.Connection) -> None:
    """Create the search index for this database if it is missing."""
    for statement in _statements(connection.dialect.name, SQLITE_SCHEMA, PG_SCHEMA):
        connection.exec_driver_sql(statement)


def drop_index(connection: sa.Connection) -> None:
    for statement in _statements(connection.dialect.name, SQLITE_DROP, PG_DROP):
        connection.exec_driver_sql(statement)


def rebuild_index(connection: sa.Connection) -> None:
    """Recreate the index from the posts table (after a restore or a bulk load)."""
    create_index(connection)
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("INSERT INTO post_fts(post_fts) VALUES ('rebuild')")
    elif connection.dialect.name == "postgresql":
        connection.exec_driver_sql("REINDEX INDEX ix_post_search_vector")


def check_index(connection: sa.Connection) -> None:
    """Raise if the FTS5 index disagrees with the posts table (PostgreSQL cannot drift)."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(
            "INSERT INTO post_fts(post_fts, rank) VALUES ('integrity-check', 1)"
        )


# `db.create_all()` (tests, first start without migrations) gets the index too.
sa.event.listen(Post.__table__, "after_create", lambda _t, conn, **_kw: create_index(conn))
sa.event.listen(Post.__table__, "before_drop", lambda _t, conn, **_kw: drop_index(conn))


def alembic_include_name(
    name: str | None, type_: str, _parent_names: Mapping[str, str | None]
) -> bool:
    """Hide the search index from autogenerate, which would otherwise want to drop it."""
    if type_ == "table":
        return not (name or "").startswith("post_fts")
    return name not in {"search_vector", "ix_post_search_vector"}


@click.command("search-reindex")
@with_appcontext
def reindex_command() -> None:
    """Rebuild the full-text search index from the posts table."""
    with db.engine.begin() as connection:
        rebuild_index(connection)
    click.echo("Search index rebuilt.")


# --- query parsing ---------------------------------------------------------------


def normalize(text: str) -> str:
    """Lower case without accents, the way the FTS5 tokenizer compares words."""
    folded = text.casefold()
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Term:
    """One thing every result must contain: a word, a `prefix*` or a "quoted phrase"."""

    words: tuple[str, ...]
    prefix: bool = False

    def fts5(self) -> str:
        # Words hold only letters and digits, so quoting them is all the escaping needed.
        return '"' + " ".join(self.words) + '"' + (" *" if self.prefix else "")

    def tsquery(self) -> str:
        lexemes = [f"'{word}'" for word in self.words]
        if self.prefix:
            lexemes[-1] += ":*"
        return "(" + " <-> ".join(lexemes) + ")"


def parse_query(text: str) -> list[Term]:
    """The terms in what the user typed; operators, stray quotes and symbols are ignored."""
    terms: list[Term] = []
    text = text or ""
    if len(text) > MAX_QUERY_LENGTH:
        # Cut at a space when there is one, so that the last word is not cut short.
        head = text[:MAX_QUERY_LENGTH]
        text = head.rsplit(maxsplit=1)[0] if text[MAX_QUERY_LENGTH].isalnum() else head
    for match in TOKEN.finditer(text):
        phrase, word, star = match.groups()
        if phrase is not None:
            words = tuple(w.casefold()[:MAX_WORD_LENGTH] for w in WORD.findall(phrase))
            term = Term(words) if words else None
        else:
            word = word.casefold()[:MAX_WORD_LENGTH]
            term = Term((word,), prefix=bool(star) and len(word) >= MIN_PREFIX_LENGTH)
        if term and term not in terms:
            terms.append(term)
        if len(terms) == MAX_TERMS:
            break
    return terms


# --- searching ----------------------------------------------------------------------


# Both backends rank the newest CANDIDATES matches (40 pages), not every match: the newest
# matches come cheaply from walking the index backwards, while anything that looks at every
# match of a common word (even FTS5's bm25(), which counts the word's documents for its IDF)
# costs time in proportion to their number. On a microblog recent posts are what people look
# for; a rarer word or a second term narrows the search to the best of all matching posts.
CANDIDATES = 1000
BM25_K1 = 1.2
BM25_B = 0.75


def _candidates_sqlite(terms: list[Term]) -> list[tuple[int, str]]:
    query = sa.text(
        "SELECT post.id, post.body FROM post JOIN ("
        "  SELECT rowid FROM post_fts WHERE post_fts MATCH :query"
        "  ORDER BY rowid DESC LIMIT :candidates"
        ") AS found ON post.id = found.rowid"
    )
    expression = " ".join(term.fts5() for term in terms)
    return list(db.session.execute(query, {"query": expression, "candidates": CANDIDATES}))


def _candidates_postgresql(terms: list[Term]) -> list[tuple[int, str]]:
    query = sa.text(
        "SELECT id, body FROM post WHERE search_vector @@ to_tsquery('simple', :query) "
        "ORDER BY id DESC LIMIT :candidates"
    )
    expression = " & ".join(term.tsquery() for term in terms)
    return list(db.session.execute(query, {"query": expression, "candidates": CANDIDATES}))


def _occurrences(term: Term, words: list[str]) -> int:
    """How many times the term occurs in a post's normalized words."""
    wanted = [normalize(word) for word in term.words]
    if len(wanted) == 1:
        if term.prefix:
            return sum(1 for word in words if word.startswith(wanted[0]))
        return words.count(wanted[0])
    size = len(wanted)
    return sum(1 for i in range(len(words) - size + 1) if words[i : i + size] == wanted)


def rank(candidates: list[tuple[int, str]], terms: list[Term]) -> list[int]:
    """Candidate ids, best first: BM25 with statistics taken from the candidates.

    Done here rather than by the database so that SQLite and PostgreSQL rank alike.
    """
    if not candidates:
        return []
    documents = [(post_id, WORD.findall(normalize(body))) for post_id, body in candidates]
    average_length = sum(len(words) for _, words in documents) / len(documents) or 1
    counts = [[_occurrences(term, words) for term in terms] for _, words in documents]
    total = len(documents)
    idf = []
    for index in range(len(terms)):
        frequency = sum(1 for row in counts if row[index])
        idf.append(math.log((total - frequency + 0.5) / (frequency + 0.5) + 1))
    scores = {}
    for (post_id, words), row in zip(documents, counts, strict=True):
        norm = BM25_K1 * (1 - BM25_B + BM25_B * len(words) / average_length)
        scores[post_id] = sum(
            weight * tf * (BM25_K1 + 1) / (tf + norm) for weight, tf in zip(idf, row, strict=True)
        )
    return sorted(scores, key=lambda post_id: (-scores[post_id], -post_id))


@dataclass
class Results(Page):
    """A page of search results, and how many posts matched: `total`, or at least `total`
    when `capped` (only the newest CANDIDATES matches are looked at)."""

    total: int = 0
    capped: bool = False


def search_posts(
    terms: list[Term], page: int, per_page: int, hidden: sa.Select | None = None
) -> Results:
    """One page of posts matching every term, best match first; none by the authors whose
    ids `hidden` selects (those the reader blocks)."""
    if not terms:
        return Results([], page, False)
    if db.session.get_bind().dialect.name == "postgresql":
        candidates = _candidates_postgresql(terms)
    else:
        candidates = _candidates_sqlite(terms)
    ranked = rank(candidates, terms)
    offset = (page - 1) * per_page
    ids = ranked[offset : offset + per_page]
    found = sa.select(Post).where(Post.id.in_(ids)).options(so.joinedload(Post.author))
    if hidden is not None:
        found = found.where(Post.user_id.not_in(hidden))
    posts = db.session.scalars(found).all()
    by_id = {post.id: post for post in posts}
    has_next = len(ranked) > offset + per_page
    return Results(
        [by_id[i] for i in ids if i in by_id],
        page,
        has_next,
        total=len(ranked),
        capped=len(candidates) >= CANDIDATES,
    )


def highlight(text: str, terms: list[Term]) -> Markup:
    """`text` escaped, with the words that match a term wrapped in <mark>."""
    exact = {normalize(word) for term in terms for word in term.words}
    prefixes = tuple(normalize(term.words[-1]) for term in terms if term.prefix)
    pieces = []
    position = 0
    for match in WORD.finditer(text):
        word = normalize(match.group())
        if word in exact or (prefixes and word.startswith(prefixes)):
            pieces.append(escape(text[position : match.start()]))
            pieces.append(Markup("<mark>%s</mark>") % match.group())
            position = match.end()
    pieces.append(escape(text[position:]))
    return Markup("").join(pieces)
