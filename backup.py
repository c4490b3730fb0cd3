"""Backups of the SQLite database: taken while the site runs, restored while it is stopped.

A backup goes through SQLite's online backup API in a single step: one read transaction, so
the copy is the database as it was at one moment, while the site (WAL) keeps writing. It is
written beside its final name and renamed into place, so a backup file is always whole.

A restore refuses while any process has the database open: it first takes the database out of
WAL mode and holds an exclusive lock, which SQLite grants only to the sole connection. The
running web and worker processes always hold one (their connection pools), so "stop the site
first" is checked, not just asked.

PostgreSQL has its own tools (pg_dump, pg_restore); these functions say so.
"""

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

BACKUP_DIR = "backups"  # inside the data dir
DAILY_PREFIX = "daily-"
POSTGRES_ADVICE = (
    "The database is not SQLite: use your database's own tools, e.g. "
    "`pg_dump --format=custom --file=microblog.dump DBNAME` to back up and "
    "`pg_restore --clean --dbname=DBNAME microblog.dump` to restore."
)


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why, for the admin."""


def sqlite_path(database_url: str) -> Path:
    """The database file behind a SQLite URL; BackupError for any other database."""
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        raise BackupError(POSTGRES_ADVICE)
    return Path(url.database)


def timestamped_name(prefix: str = "app-", moment: datetime | None = None) -> str:
    """`app-20240501T031700Z.db`: names that sort by age."""
    moment = moment or datetime.now(UTC)
    return f"{prefix}{moment.strftime('%Y%m%dT%H%M%SZ')}.db"


def take(source: Path, target: Path) -> Path:
    """Copy the live database `source` to `target` (a consistent snapshot); returns `target`."""
    if not source.is_file():
        raise BackupError(f"There is no database at {source}.")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        copy_database(source, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def copy_database(source: Path, target: Path) -> None:
    """SQLite's backup API, all pages in one step, into a self-contained file (no WAL)."""
    with (
        closing(sqlite3.connect(source, timeout=30)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        # pages=-1: one step, one read snapshot. Copying in slices would restart each time
        # the site writes, and might never finish on a busy site.
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode=DELETE")


def check(path: Path) -> dict[str, int]:
    """Refuse a file that is not a sound Microblog database; else its user and post counts."""
    if not path.is_file():
        raise BackupError(f"There is no file at {path}.")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                raise BackupError(f"{path} is damaged: {'; '.join(result[:3])}")
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if not {"user", "post", "alembic_version"} <= tables:
                raise BackupError(f"{path} is a SQLite database, but not Microblog's.")
            users = conn.execute('SELECT count(*) FROM "user"').fetchone()[0]
            posts = conn.execute("SELECT count(*) FROM post").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database, or is damaged ({exc}).") from None
    return {"users": users, "posts": posts}


def restore(source: Path, live: Path) -> dict[str, int]:
    """Replace the database `live` with the backup `source` (checked first); the site must be
    stopped. Returns the restored database's counts (see `check`)."""
    counts = check(source)
    live.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    incoming = live.with_name(live.name + ".restoring")
    incoming.unlink(missing_ok=True)
    try:
        copy_database(source, incoming)  # the backup file itself stays untouched
        with sole_access(live):
            os.replace(incoming, live)
    finally:
        incoming.unlink(missing_ok=True)
    return counts


@contextmanager
def sole_access(database: Path) -> Iterator[None]:
    """Hold `database` locked against every other connection, or raise BackupError if any
    process has it open (the site is running)."""
    if not database.exists():
        yield
        return
    running = BackupError(
        f"{database} is in use: stop the web server and the worker first "
        "(Ctrl-C ./run.sh, or systemctl stop microblog-web microblog-worker)."
    )
    with closing(sqlite3.connect(database, timeout=0, isolation_level=None)) as conn:
        try:
            # Leaving WAL mode needs the only connection; it also folds the WAL into the file.
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            if mode != "delete":
                raise running
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError:
            raise running from None
        try:
            yield
        finally:
            conn.rollback()


def prune(directory: Path, keep: int, prefix: str = DAILY_PREFIX) -> list[Path]:
    """Delete all but the newest `keep` backups named `<prefix>…db`; returns those deleted."""
    backups = sorted(directory.glob(f"{prefix}*.db"))
    doomed = backups[:-keep] if keep > 0 else backups
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
