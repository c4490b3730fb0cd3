"""The database: the `db` object, the declarative base, the SQLite tuning every
connection gets, and the small helpers every model module uses."""

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast, overload

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

if TYPE_CHECKING:
    pass


class Base(so.DeclarativeBase):
    # Named constraints let Alembic alter SQLite tables (batch mode) predictably.
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)

# Who commits: views, API endpoints, CLI commands and tasks end their own unit of work
# (commit, or let the request teardown discard it). Model methods only add, change and
# flush, except where the order of commits is the point: `launch_task` commits the row
# before enqueueing, and the `Task` state transitions are each a compare-and-set that
# commits at once, because the web process and the worker race on the same row. No
# model method rolls back a session it did not open.

# PostgreSQL's INTEGER: larger ids cannot exist (and would overflow SQLite's binding).
MAX_ROW_ID = 2**31 - 1


def row_id(text: str) -> int | None:
    """The row id `text` spells in ASCII digits; None for anything else, or for a number
    no row can have (`"²".isdigit()` is true, and int() of it fails)."""
    if not (text.isascii() and text.isdecimal() and len(text) <= 10):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ROW_ID else None


@sa.event.listens_for(sa.Engine, "connect")
def _tune_sqlite(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    """WAL, a busy timeout and foreign keys on every SQLite connection, in both processes.

    WAL lets the worker write progress while pages read; the busy timeout makes a writer
    wait for another instead of failing with "database is locked".
    """
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def utcnow() -> datetime:
    """Naive UTC now: every timestamp in the database is UTC without a tzinfo."""
    return datetime.now(UTC).replace(tzinfo=None)


@overload
def isoformat_utc(moment: datetime) -> str: ...
@overload
def isoformat_utc(moment: None) -> None: ...
def isoformat_utc(moment: datetime | None) -> str | None:
    """`2024-05-01T12:00:00Z` for a naive UTC datetime."""
    if moment is None:
        return None
    return moment.replace(microsecond=0).isoformat() + "Z"


@dataclass
class Page:
    """One page of results, without counting the whole result set (that grows with the table)."""

    items: Sequence[Any]
    number: int
    has_next: bool

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)


if TYPE_CHECKING:
    # db.Model is built from Base at run time; a type checker cannot take a base class from
    # an attribute of an object, so it sees the declarative base itself.
    Model = Base
else:
    Model = db.Model


def execute_dml(statement: sa.Executable) -> sa.CursorResult[Any]:
    """Run an UPDATE or DELETE in the session. Its result is a CursorResult, the kind that
    has a rowcount (the session's signature promises only a generic Result)."""
    return cast(sa.CursorResult[Any], db.session.execute(statement))


def materialized(query: sa.Select[Any]) -> sa.CTE:
    """`query` as a CTE run once, before the statement that uses it. A claim must be: as
    an IN (subquery) PostgreSQL may run a LIMIT … FOR UPDATE SKIP LOCKED subquery again for
    each row it compares, and so take more rows than the limit."""
    return query.cte().prefix_with("MATERIALIZED", dialect="postgresql")


def _insert_unless_conflict(model: type[Base], values: dict) -> sa.Executable:
    """INSERT that quietly skips a row breaking a unique index; it returns the new row's
    primary key, or no row when it skipped it.

    Both databases spell it ON CONFLICT DO NOTHING; no transaction is spoiled by it.
    RETURNING, not the rowcount, tells which: SQLAlchemy keeps an INSERT's rowcount only
    on request, and on PostgreSQL it reads -1 otherwise (every row would look skipped).
    """
    # Declared as any FROM clause; every model here is mapped to a plain table.
    table = cast(sa.Table, model.__table__)
    insert = _dialect_insert(table).values(**values).on_conflict_do_nothing()
    return insert.returning(*table.primary_key.columns)


def _dialect_insert(table: sa.Table) -> Any:
    """The INSERT construct of the database in use: the one that has ON CONFLICT."""
    if db.engine.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def partial_unique_index(name: str, *columns: str, where: str) -> sa.Index:
    """A unique index over the rows matching `where` (SQL), on SQLite and PostgreSQL alike."""
    predicate = sa.text(where)
    return sa.Index(name, *columns, unique=True, sqlite_where=predicate, postgresql_where=predicate)
