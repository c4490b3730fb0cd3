"""Import an archive (an export from here, or a Mastodon outbox) into an account: the task,
the uploads it keeps, and the batch insert that adds the posts."""

import dataclasses
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

import orjson
import sqlalchemy as sa
from flask import current_app
from huey.api import Task as HueyTask
from werkzeug.datastructures import FileStorage

import importer
from database import db, utcnow
from follows import Follows
from i18n import N_, nphrase, phrase, store_phrases
from jobs import Task, TaskStatus
from models import Post, User
from task_support import consuming, imports_dir, running_task, start_with_upload, upload_path
from worker import Progress, app_context, huey, on_task_over, task_over, tracked

# What `add_imported_posts` takes for each post: (body, timestamp, source id, import key),
# as an importer.ImportedPost holds them.
ImportablePost = tuple[str, datetime, str | None, str]

# The posts of a batch (see `add_imported_posts_json`), in their order. SQLite keeps a
# DATETIME as the text SQLAlchemy writes, "2024-05-01 12:00:00.000000"; orjson wrote
# "2024-05-01T12:00:00", with ".123456" only when there are microseconds. `WHERE true`
# tells SQLite's parser that ON CONFLICT belongs to the INSERT.
IMPORT_POSTS_SQLITE = sa.text(
    "INSERT INTO post (body, timestamp, user_id, import_key) "
    "SELECT json_extract(value, '$[0]'), "
    "  substr(json_extract(value, '$[1]'), 1, 10) || ' ' || "
    "  substr(json_extract(value, '$[1]'), 12, 8) || "
    "  coalesce(nullif(substr(json_extract(value, '$[1]'), 20), ''), '.000000'), "
    "  :user_id, json_extract(value, '$[3]') "
    "FROM json_each(:posts) WHERE true ORDER BY key "
    "ON CONFLICT DO NOTHING"
)
IMPORT_POSTS_POSTGRESQL = sa.text(
    "INSERT INTO post (body, timestamp, user_id, import_key) "
    "SELECT post ->> 0, CAST(post ->> 1 AS timestamp), :user_id, post ->> 3 "
    "FROM json_array_elements(CAST(:posts AS json)) WITH ORDINALITY AS batch(post, number) "
    "ORDER BY number "
    "ON CONFLICT DO NOTHING"
)
# Imported rows skip the search index's insert trigger (see search.py):
# `add_imported_posts_json` indexes its `count` new rows, the last ones of the table, with
# this one statement.
INDEX_NEWEST_POSTS_SQLITE = sa.text(
    "INSERT INTO post_fts(rowid, body) SELECT id, body FROM post "
    "WHERE id > (SELECT max(id) FROM post) - :count"
)


def add_imported_posts(user: User, batch: Sequence[ImportablePost]) -> int:
    """Add a batch of imported posts to `user`'s, skipping those whose key they already
    have; how many were added (the caller commits)."""
    return add_imported_posts_json(user, orjson.dumps([tuple(post) for post in batch]))


def add_imported_posts_json(user: User, posts: bytes) -> int:
    """`add_imported_posts` for a batch written as JSON: an array of [body, timestamp,
    source id, key] arrays, the timestamp naive UTC in ISO 8601 (as orjson writes a
    datetime, and `spool` a batch).

    One INSERT … SELECT from the database's own JSON functions: the rows never become
    Python objects (which cost more than the insert itself for a million posts). ON
    CONFLICT DO NOTHING leaves out a post imported before, or twice in one batch,
    without spoiling the transaction.
    """
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    statement = IMPORT_POSTS_SQLITE if sqlite else IMPORT_POSTS_POSTGRESQL
    values = {"posts": posts.decode(), "user_id": user.id}
    added = cast(sa.CursorResult[Any], db.session.execute(statement, values)).rowcount
    if added and sqlite:
        # The search index's insert trigger skips imported rows (one FTS5 insert per row
        # cost more than the rest of the import): they are indexed here, at once. They
        # are the newest `added` rows: this transaction holds SQLite's write lock, so
        # their ids follow one another at the end of the table.
        db.session.execute(INDEX_NEWEST_POSTS_SQLITE, {"count": added})
    return added


def imported_post_count(user: User) -> int:
    """How many of the user's posts came from an import."""
    query = sa.select(sa.func.count()).where(Post.user_id == user.id, Post.import_key.is_not(None))
    return db.session.execute(query).scalar_one()


# --- the checked posts, kept between the two passes -------------------------------------


def batches(
    posts: Iterator[importer.ImportedPost], size: int
) -> Iterator[list[importer.ImportedPost]]:
    """Lists of up to `size` posts, for `add_imported_posts`."""
    batch: list[importer.ImportedPost] = []
    for post in posts:
        batch.append(post)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def spool(posts: Iterator[importer.ImportedPost], out: IO[bytes], size: int) -> int:
    """Write `posts` to `out` in batches of up to `size`, for `unspool`; how many.

    An import parses the uploaded file once, in its check pass, and keeps the checked posts
    here for the pass that adds them: parsing the file again cost more than this. A batch
    is one line of JSON, an array of the posts' `importer.ImportedPost` fields (orjson writes it,
    times included, several times faster than pickle does; the database reads it).
    """
    count = 0
    for batch in batches(posts, size):
        out.write(orjson.dumps([tuple(post) for post in batch]) + b"\n")
        count += len(batch)
    return count


def unspool(spooled: IO[bytes]) -> Iterator[bytes]:
    """The batches `spool` wrote, from the start of `spooled`, one at a time, each as its
    line of JSON (for `add_imported_posts_json`)."""
    spooled.seek(0)
    yield from spooled


# --- the uploads: kept for a retry, but not for ever ---------------------------------------


@on_task_over
def remove_upload(task_id: str) -> None:
    """The upload of a task that will not run again goes, unless a failed import keeps it
    for a retry (`keeps_upload`); a newer failure replaces an older one's."""
    row = db.session.get(Task, task_id, populate_existing=True)
    if row is None or not keeps_upload(row):
        upload_path(task_id).unlink(missing_ok=True)
    if row is not None and row.status == TaskStatus.FAILED and row.name in UPLOAD_TASKS:
        drop_replaced_uploads(row.user_id, row.name)


def keeps_upload(row: Task) -> bool:
    """Whether a task's uploaded file is kept: while the task may still run, and after a
    failed import until it expires (so that an admin can retry it), if it is its user's
    latest failed import. An upload may be 2 GiB: one kept per user, or failing imports
    again and again would fill the disk."""
    if row.is_active:
        return True
    if row.status != TaskStatus.FAILED or row.name not in UPLOAD_TASKS:
        return False
    finished = row.finished_at or row.updated_at
    expiry = timedelta(days=current_app.config["MICROBLOG_EXPORT_EXPIRY_DAYS"])
    if finished + expiry <= utcnow():
        return False
    return db.session.scalar(latest_failures(row.user_id, row.name).limit(1)) == row.id


def latest_failures(user_id: int, name: str) -> sa.Select:
    """The ids of the user's failed tasks of that name, the latest first."""
    return (
        sa.select(Task.id)
        .where(Task.user_id == user_id, Task.name == name, Task.status == TaskStatus.FAILED)
        .order_by(
            sa.func.coalesce(Task.finished_at, Task.updated_at).desc(), Task.created_at.desc()
        )
    )


def drop_replaced_uploads(user_id: int, name: str) -> None:
    """Delete the uploads of the user's failed tasks of that name but the latest one's: a
    newer failure replaced them (see `keeps_upload`)."""
    for task_id in db.session.scalars(latest_failures(user_id, name).offset(1)):
        upload_path(task_id).unlink(missing_ok=True)


def start_import(user: User, upload: FileStorage) -> Task | None:
    """Store an uploaded archive (a werkzeug FileStorage) and launch its import; None (and
    the file dropped) when an import is already in progress for `user`."""
    return start_with_upload(user, upload, import_posts, N_("Importing posts"))


# --- the import task ----------------------------------------------------------------------

# Called with the number of posts read after each batch; tests set it to pause an import.
after_import_batch: Callable[[int], None] | None = None

# The check pass reads the file without the database: it takes this share of the bar.
CHECK_SHARE = 30


def _import_message(archive: importer.Archive, added: int, importable: int, followed: int) -> str:
    """The final sentence: what was added, what was already here, what was skipped and why."""
    parts = [nphrase("Imported %(num)s post.", "Imported %(num)s posts.", added)]
    if importable > added:
        parts.append(
            nphrase("%(num)s was already here.", "%(num)s were already here.", importable - added)
        )
    parts.extend(archive.skipped.phrases())
    if followed:
        parts.append(
            nphrase(
                "Now following %(num)s more user.", "Now following %(num)s more users.", followed
            )
        )
    return store_phrases(*parts)


def run_import(row: Task, user: User, path: Path) -> str:
    """Check the whole file, then add its posts in batches; the final message.

    The check pass parses the file and keeps the checked posts in a scratch file (gone
    when closed, even after a crash); the second pass adds them from there. A bad file
    fails in the check pass, before anything is added. Adding is idempotent (each post's
    import key), so a run after a crash starts again from the check pass: what the
    earlier run added is recognised and left as it is. The count of imported posts before
    the first run is kept in the checkpoint, for an exact final message.
    """
    progress = Progress(row.id, 100)
    checkpoint = row.get_checkpoint()
    before = checkpoint["before"] if checkpoint else imported_post_count(user)
    mark = {"before": before}
    progress.write(0, N_("Checking the file…"), mark)
    config = current_app.config
    limits = dataclasses.replace(
        importer.DEFAULT_LIMITS, upload_bytes=config["MICROBLOG_IMPORT_MAX_BYTES"]
    )
    archive = importer.open_archive(path, limits)
    with tempfile.TemporaryFile(dir=imports_dir()) as checked:
        batch_size = config["MICROBLOG_IMPORT_BATCH_SIZE"]
        importable = spool(_checking(archive, progress), checked, batch_size)
        importing = nphrase("Importing %(num)s post…", "Importing %(num)s posts…", importable)
        progress.write(CHECK_SHARE, store_phrases(importing), mark)
        read = 0
        for batch in unspool(checked):
            add_imported_posts_json(user, batch)
            db.session.commit()
            read = min(read + batch_size, importable)  # every batch is full but the last
            if after_import_batch:
                after_import_batch(read)
            done = CHECK_SHARE + (100 - CHECK_SHARE) * read // max(importable, 1)
            progress.update(done, checkpoint=lambda: mark)
    followed = Follows(user).follow_usernames(archive.following) if archive.following else 0
    db.session.commit()
    added = imported_post_count(user) - before
    return _import_message(archive, added, importable, followed)


def _checking(archive: importer.Archive, progress: Progress) -> Iterator[importer.ImportedPost]:
    """The archive's posts, moving the bar through the check pass's share as they are read."""
    for number, post in enumerate(archive.posts(), start=1):
        if number % 1000 == 0:
            progress.update(int(archive.progress * CHECK_SHARE))
        yield post


@tracked
@huey.task(context=True, name="import_posts")
def import_posts(user_id: int, task: HueyTask = None) -> int:
    """Import the archive uploaded for this task into the user's posts. The upload is
    deleted when the import is done or cancelled, or when the file is bad; an import that
    failed for another reason keeps it for a retry until it expires (`keeps_upload`)."""
    with app_context():
        subjects = running_task(task.id, user_id)
        if subjects is None:
            task_over(task.id)
            return 0
        row, user = subjects
        path = upload_path(row.id)
        with consuming(path):
            if not path.is_file():
                gone = phrase("The uploaded file is gone; please upload it again.")
                raise importer.ArchiveError(gone)
            try:
                message = run_import(row, user, path)
            except importer.ArchiveError:
                path.unlink(missing_ok=True)  # the file itself is bad: a retry cannot help
                raise
        Task.change(row.id, [TaskStatus.RUNNING], message=message)
        return 0


# Tasks that start from an uploaded file (a multipart POST /api/tasks, field `file`).
UPLOAD_TASKS = {"import_posts": start_import}
