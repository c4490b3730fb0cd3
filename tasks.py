"""Background tasks, run by the Huey consumer: `huey_consumer tasks.huey`.

The web app imports this module to enqueue tasks; only the consumer runs them. The state
users see lives in the `Task` table, driven by Huey's signals and the tasks' own progress
writes; Huey itself keeps no results.
"""

import dataclasses
import functools
import logging
import os
import smtplib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import sqlalchemy as sa
from flask import (
    Response,
    current_app,
    render_template,
    send_file,
    send_from_directory,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from huey import crontab
from huey import signals as S
from huey.api import Task as HueyTask
from huey.api import TaskWrapper
from sqlalchemy.engine.interfaces import DBAPICursor
from werkzeug.datastructures import FileStorage

import avatars
import backup
import federation_in  # noqa: F401  (the consumer runs its task, apply_inbox_activity)
import federation_out
import importer
import language_detection
import worker
from database import db, isoformat_utc, utcnow
from i18n import N_, PhrasedError, mail_language, nphrase, phrase, store_phrases
from jobs import Task, TaskStatus
from mailer import (
    mail_configured,
    send_email,
    send_email_change_emails,
    send_password_reset_email,
    site_link,
)
from models import Post, User
from worker import (
    CONSUMER_ID,
    TRACKED_TASKS,
    Progress,
    app_context,
    huey,
    live_consumers,
    on_consumer_start,
    on_task_over,
    stopping,
    tracked,
)

log = logging.getLogger("huey.microblog")

# Huey's decorators take these when this module is imported, before any app exists; every
# other setting a task uses is read from the app's config when it runs.
MAIL_RETRIES: int = worker.settings["MICROBLOG_MAIL_RETRIES"]
MAIL_RETRY_DELAY: float = worker.settings["MICROBLOG_MAIL_RETRY_DELAY"]


# --- signals: Huey's view of a task, written to its Task row --------------------------


# A signal handler: it takes Huey's task and whatever else the signal sends (an error's exception).
Handler = Callable[..., None]


def _row_signal(*signal_names: str) -> Callable[[Handler], Handler]:
    """Register a handler for tracked tasks only, run in a fresh app context."""

    def decorator(handler: Handler) -> Handler:
        @huey.signal(*signal_names)
        def receiver(signal: str, task: HueyTask, *args: Any) -> None:
            if task.name not in TRACKED_TASKS:
                return
            with app_context():
                handler(task, *args)

        return handler

    return decorator


@_row_signal(S.SIGNAL_EXECUTING)
def on_executing(task: HueyTask) -> None:
    values: dict[str, Any] = {
        "status": TaskStatus.RUNNING,
        "message": None,
        "consumer_id": CONSUMER_ID,
    }
    row = db.session.get(Task, task.id)
    if row is not None and row.started_at is None:
        values["started_at"] = utcnow()
    Task.change(task.id, [TaskStatus.QUEUED], **values)


def results_expire() -> datetime:
    """When a task finishing now stops offering its result (an export's file)."""
    return utcnow() + timedelta(days=current_app.config["MICROBLOG_EXPORT_EXPIRY_DAYS"])


@_row_signal(S.SIGNAL_COMPLETE)
def on_complete(task: HueyTask) -> None:
    Task.finish(task.id, expires_at=results_expire())


@_row_signal(S.SIGNAL_ERROR)
def on_error(task: HueyTask, exc: Exception) -> None:
    row = db.session.get(Task, task.id)
    if row is None:
        return
    if task.retries > 0:  # Huey runs it again after retry_delay
        message = store_phrases(
            phrase(
                "Could not send the email (%(reason)s); trying again shortly.",
                reason=describe(exc),
            )
        )
        Task.change(task.id, [TaskStatus.RUNNING], message=message)
    elif row.result_file:  # only the email failed: the export itself is fine
        message = store_phrases(
            phrase(
                "Your export is ready to download, but the email could not be sent (%(reason)s).",
                reason=describe(exc),
            )
        )
        Task.finish(task.id, message=message, expires_at=results_expire())
    else:
        Task.change(task.id, TaskStatus.active(), status=TaskStatus.FAILED, message=reason(exc))
        remove_task_files(task.id)


@_row_signal(S.SIGNAL_CANCELED, S.SIGNAL_REVOKED)
def on_cancelled(task: HueyTask) -> None:
    Task.change(task.id, TaskStatus.active(), status=TaskStatus.CANCELLED, message=None)
    # Also when the row was already cancelled (a queued task, revoked by the web app): a
    # run that a crashed worker left behind has a partial file; a queued import, its upload.
    remove_task_files(task.id)


@_row_signal(S.SIGNAL_INTERRUPTED)
def on_interrupted(task: HueyTask) -> None:
    # The consumer is stopping: put the task back so that the next consumer runs it.
    message = N_("Paused while the background worker restarts.")
    if Task.change(
        task.id, [TaskStatus.RUNNING], status=TaskStatus.QUEUED, message=message, consumer_id=None
    ):
        huey.enqueue(task)
        log.info("Task %s interrupted; re-queued", task.id)


def running_task(task_id: str, user_id: int) -> tuple[Task, User] | None:
    """The Task row and the user a tracked task works for; None (logged) when there is
    nothing to do: either is gone, or the row is not running (cancelled meanwhile)."""
    row = db.session.get(Task, task_id)
    user = db.session.get(User, user_id)
    if row is None or user is None or row.status != TaskStatus.RUNNING:
        log.info("Task %s: nothing to do (row or user gone, or not running)", task_id)
        return None
    return row, user


def describe(exc: BaseException) -> str:
    """A one-line, human-readable reason (the traceback goes to the log)."""
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def reason(exc: BaseException) -> str:
    """Why a task failed, as its message: in the reader's language when the error says it
    in phrases (a bad file, a bad picture), else the error's own one line."""
    return store_phrases(*exc.phrases) if isinstance(exc, PhrasedError) else describe(exc)


# --- export your posts ------------------------------------------------------------------


def exports_dir() -> Path:
    path = Path(current_app.config["DATA_DIR"]) / "exports"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def send_export(task: Task) -> Response | None:
    """The task's export as a `posts.json` download, or None when there is none to give
    (not finished, failed, expired, or the file is gone)."""
    path = exports_dir() / (task.result_file or "")
    if not task.has_download or not path.is_file():
        return None
    return send_file(
        path, mimetype="application/json", as_attachment=True, download_name="posts.json"
    )


def remove_partial_export(task_id: str) -> None:
    (exports_dir() / f"{task_id}.json.part").unlink(missing_ok=True)


@on_task_over
def remove_task_files(task_id: str) -> None:
    """What a task that will not run again leaves behind: a partial export, an upload (but
    a failed import keeps its upload for a retry, see `keeps_upload`)."""
    remove_partial_export(task_id)
    row = db.session.get(Task, task_id, populate_existing=True)
    if row is None or not keeps_upload(row):
        upload_path(task_id).unlink(missing_ok=True)
    if row is not None and row.status == TaskStatus.FAILED and row.name in UPLOAD_TASKS:
        drop_replaced_uploads(row.user_id, row.name)


def delete_user(user: User, progress: "Progress | None" = None) -> int:
    """Delete an account with everything in it, then its files (commits as it goes); the
    number of posts deleted. The one way an account is deleted: the `delete_account` task,
    `flask user delete` and /admin all come here.

    Posts go first, a batch per transaction with `progress`, so that other writers wait for
    a moment at most; then the user row, whose foreign keys take the messages, follows,
    notifications, tasks and tokens with it. Run again after a crash, it carries on.
    """
    # Locked first, in the transaction of the caller's checks: the account can do nothing
    # more, and an admin being deleted no longer counts as one while the posts go.
    user.disable()
    db.session.commit()
    federation_out.account_deleted(user)
    done = 0
    while deleted := user.delete_some_posts(current_app.config["MICROBLOG_EXPORT_BATCH_SIZE"]):
        db.session.commit()
        done += deleted
        if progress:
            progress.update(done)
    task_ids, pictures = user.task_ids(), user.avatar_files()
    files = user.delete_account()
    db.session.commit()
    for name in files:
        (exports_dir() / name).unlink(missing_ok=True)
    for task_id in task_ids:
        upload_path(task_id).unlink(missing_ok=True)
    for name in pictures:
        (avatars_dir() / name).unlink(missing_ok=True)
    return done


def _posts_json(batch: Sequence[Sequence[Any]]) -> memoryview:
    """A batch of posts as UTF-8 JSON objects separated by commas: one orjson call per batch,
    whose brackets are left out without copying the rest.

    Timestamps become `2024-05-01T12:00:00Z`. The query asks for them as text
    ("2024-05-01 12:00:00.123456", see `_timestamp_text`): slicing it, inline, is several
    times faster than parsing and formatting a datetime, which would be most of the work of
    a large export. A database that gives datetimes all the same is handled too.
    """
    if batch and isinstance(batch[0][1], str):
        posts = [
            {"id": post_id, "body": body, "timestamp": f"{ts[:10]}T{ts[11:19]}Z"}
            for body, ts, post_id in batch
        ]
    else:
        posts = [
            {"id": post_id, "body": body, "timestamp": isoformat_utc(ts)}
            for body, ts, post_id in batch
        ]
    return memoryview(orjson.dumps(posts))[1:-1]


def _timestamp_text(dialect: str) -> sa.ColumnElement[str]:
    """Post.timestamp as the text `_posts_json` slices and a checkpoint keeps whole,
    "2024-05-01 12:00:00.123456": SQLite stores it so, and PostgreSQL is asked for it
    (to_char, whatever its DateStyle), so that the driver builds no datetime per row."""
    if dialect == "postgresql":
        return sa.func.to_char(Post.timestamp, "YYYY-MM-DD HH24:MI:SS.US")
    return sa.type_coerce(Post.timestamp, sa.String)


EXPORT_VERSION = 2


def _export_head(user: User) -> bytes:
    """What comes before the posts: the format's version and the profile."""
    picture = user.avatar_file(avatars.AVATAR_SIZES[-1]) if user.avatar_version else None
    profile = {"username": user.username, "about_me": user.about_me, "avatar": picture}
    head = orjson.dumps({"version": EXPORT_VERSION, "profile": profile})
    return head[:-1] + b', "posts": ['


def _export_tail(user: User) -> bytes:
    """What comes after the posts: the usernames followed, read when the posts are done."""
    return b'\n], "following": ' + orjson.dumps(user.following_usernames()) + b"}\n"


# Called with the number of posts written after each batch; tests set it to pause an export mid-run.
after_export_batch: Callable[[int], None] | None = None


def _export_checkpoint(out: BinaryIO, done: int, last_row: Sequence[Any]) -> dict:
    """Where a resumed export continues: the file's size once flushed, the posts in it, and
    the sort key of the last one. Written with the progress, so at most ~100 times."""
    out.flush()
    _body, timestamp, post_id = last_row
    moment = timestamp if isinstance(timestamp, str) else timestamp.isoformat()
    return {"size": os.fstat(out.fileno()).st_size, "done": done, "after": [moment, post_id]}


def _resume_point(row: Task, partial: Path) -> dict | None:
    """The checkpoint of an earlier run of this export, if its partial file is still there."""
    checkpoint = row.get_checkpoint()
    if checkpoint is None or not partial.is_file():
        return None
    if partial.stat().st_size < checkpoint["size"]:
        return None  # not the file that checkpoint describes: start again
    return checkpoint


def write_export(task_id: str, user_id: int) -> tuple[str, int, int]:
    """Stream the user's export, posts oldest first, to exports/<task id>.json.

    `{"version": 2, "profile": {...}, "posts": [{"id", "body", "timestamp"}, ...],
    "following": [...]}`: the head is written before the first batch (and so is inside
    every checkpoint), the usernames followed after the last one.

    Reads in batches on its own connection and writes as it goes, so memory stays flat
    however many posts there are. A run after a crash continues from the last checkpoint:
    the partial file is cut back to what the checkpoint counted, and the query starts after
    the last post it had written, so each post is in the file exactly once.
    Returns (file name, post count, size in bytes).
    """
    row = db.session.get_one(Task, task_id)
    user = db.session.get_one(User, user_id)
    total = db.session.execute(
        sa.select(sa.func.count()).where(Post.user_id == user_id)
    ).scalar_one()
    final = exports_dir() / f"{task_id}.json"
    partial = final.with_name(final.name + ".part")
    query = (
        sa.select(Post.body, _timestamp_text(db.engine.dialect.name), Post.id)
        .where(Post.user_id == user_id)
        .order_by(Post.timestamp, Post.id)
    )
    resume = _resume_point(row, partial)
    progress = Progress(task_id, total, row.progress if resume else 0)
    if resume:
        after_time, after_id = resume["after"]
        moment = sa.literal(datetime.fromisoformat(after_time), Post.timestamp.type)
        query = query.where(sa.tuple_(Post.timestamp, Post.id) > sa.tuple_(moment, after_id))
        os.truncate(partial, resume["size"])
        done = resume["done"]
        log.info("Task %s: resuming after %d of %d posts", task_id, done, total)
        resuming = phrase("Resuming after %(done)s of %(total)s posts…", done=done, total=total)
        progress.write(progress.percent, store_phrases(resuming))
    else:
        done = 0
        exporting = nphrase("Exporting %(num)s post…", "Exporting %(num)s posts…", total)
        progress.write(0, store_phrases(exporting))
    with (
        db.engine.connect() as conn,
        # Closing the result resets the cursor: an abandoned SQLite cursor would keep its
        # old snapshot open and make the next writer on this pooled connection fail.
        conn.execution_options(stream_results=True).execute(query) as rows,
        partial.open("ab" if resume else "wb") as out,
    ):
        if not resume:
            out.write(_export_head(user))
        for batch in _batches(rows, current_app.config["MICROBLOG_EXPORT_BATCH_SIZE"]):
            out.write(b"\n" if done == 0 else b",\n")
            out.write(_posts_json(batch))
            done += len(batch)
            if after_export_batch:
                after_export_batch(done)
            last = batch[-1]
            progress.update(done, checkpoint=functools.partial(_export_checkpoint, out, done, last))
        out.write(_export_tail(user))
    os.replace(partial, final)
    return final.name, done, final.stat().st_size


def _batches(rows: sa.CursorResult, size: int) -> Iterator[Sequence]:
    """The rows of a streamed result in lists of `size`, mostly straight from the driver's
    cursor (server-side on PostgreSQL): plain tuples, without the Row object per row that
    would cost as much as the JSON encoding. Only for columns that need no result
    processing (here text, an integer, and a timestamp that `_posts_json` handles)."""
    batch: Sequence = rows.fetchmany(size)  # through SQLAlchemy first: it reads a row ahead
    # When that first read found no row beyond its look-ahead (a result of one row),
    # SQLAlchemy has closed the result and let go of the cursor (typed as always there).
    cursor: DBAPICursor | None = rows.cursor
    while batch:
        yield batch
        if cursor is None:
            return
        batch = cursor.fetchmany(size)


def prune_exports(user_id: int, keep: int) -> int:
    """Delete the files of the user's finished exports beyond the newest `keep`."""
    older = db.session.scalars(Task.finished_exports(user_id, "export_posts").offset(keep)).all()
    for row in older:
        (exports_dir() / (row.result_file or "")).unlink(missing_ok=True)
        row.result_file = None
    db.session.commit()
    return len(older)


def email_export(row: Task) -> bool:
    """Mail the export (attached, or a link when large); False when mail is not configured."""
    if not mail_configured():
        return False
    if row.result_file is None or row.result_size is None:
        raise ValueError(f"task {row.id} has no export file to mail")
    Task.record_progress(row.id, 100, N_("Sending the email…"))
    path = exports_dir() / row.result_file
    attach = row.result_size <= current_app.config["MICROBLOG_EXPORT_ATTACH_MAX_BYTES"]
    link = site_link("task_pages.download_export", task_id=row.id)
    context = {"user": row.user, "task": row, "attached": attach, "link": link}
    attachments = [("posts.json", "application/json", path.read_bytes())] if attach else []
    with force_locale(mail_language(row.user)):
        return send_email(
            "[Microblog] " + _("Your blog posts"),
            [row.user.email],
            render_template("email/export_posts.txt", **context),
            render_template("email/export_posts.html", **context),
            attachments,
        )


# With context=True huey always passes `task`; `HueyTask = None` checks because huey ships no
# type information (its names are Any to mypy).
@tracked
@huey.task(context=True, retries=MAIL_RETRIES, retry_delay=MAIL_RETRY_DELAY, name="export_posts")
def export_posts(user_id: int, task: HueyTask = None) -> int:
    """Export a user's posts to a JSON file, then email it. Returns the number of posts.

    Only the email is retried (SMTP down); when a retry runs, the file is already there.
    """
    with app_context():
        subjects = running_task(task.id, user_id)
        if subjects is None:
            return 0
        row, user = subjects
        count = 0
        if not row.result_file:
            try:
                name, count, size = write_export(row.id, user_id)
            except Exception:
                task.retries = 0  # retrying does not help a failed export; only mail is transient
                remove_partial_export(row.id)
                raise
            Task.change(row.id, [TaskStatus.RUNNING], result_file=name, result_size=size)
            # This one is about to be the newest: keep it and the KEEP - 1 before it.
            prune_exports(user_id, current_app.config["MICROBLOG_EXPORT_KEEP"] - 1)
            row = db.session.get_one(Task, row.id, populate_existing=True)
        try:
            mailed = email_export(row)
        except (smtplib.SMTPException, OSError):
            raise  # transient (server down, connection lost): Huey retries after a delay
        except Exception:
            task.retries = 0
            raise
        if mailed:
            message = N_("Your export is ready. We also emailed it to you.")
        else:
            message = N_("Your export is ready to download.")
        Task.change(row.id, [TaskStatus.RUNNING], message=message)
        return count


# --- import posts -------------------------------------------------------------------------


def imports_dir() -> Path:
    path = Path(current_app.config["DATA_DIR"]) / "imports"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def upload_path(task_id: str) -> Path:
    """Where a task's uploaded input (an archive, a picture) is kept until the task ends:
    named by the task, in <data dir>/imports/."""
    return imports_dir() / task_id


@contextmanager
def consuming(path: Path) -> Iterator[None]:
    """Delete a task's upload once the task has done its work. When it fails, is cancelled
    or is interrupted, the signal handlers decide (`remove_task_files`): a failed import
    keeps its upload for a retry, and a stopping consumer's task runs again from it."""
    try:
        yield
    except BaseException:
        db.session.rollback()
        raise
    path.unlink(missing_ok=True)


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


def start_with_upload(
    user: User, upload: FileStorage, task_function: TaskWrapper, description: str
) -> Task | None:
    """Store `upload` (a werkzeug FileStorage) as the input of a new task, and launch it;
    None (and the file dropped) when one of its kind is already in progress for `user`."""
    task_id = str(uuid.uuid4())
    path = upload_path(task_id)
    # Copied in chunks from werkzeug's spooled temporary file: never whole in memory.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        upload.save(out)
    task = user.launch_task(task_function, description, task_id=task_id)
    if task is None:
        path.unlink(missing_ok=True)
    return task


class UploadGone(Exception):
    """A failed task cannot run again: the file uploaded for it is no longer kept."""


def retry(row: Task) -> Task | None:
    """Start a failed task again, as a new task for the same user; None when one of its
    kind is in progress. An import starts again from the file uploaded for the failed one
    (`UploadGone` when it has expired); the new task then owns that file."""
    if row.name not in UPLOAD_TASKS:
        return USER_TASKS[row.name](row.user)
    task_id = str(uuid.uuid4())
    try:
        os.replace(upload_path(row.id), upload_path(task_id))
    except FileNotFoundError:
        raise UploadGone(row.id) from None
    task = row.user.launch_task(TRACKED_TASKS[row.name], row.description, task_id=task_id)
    if task is None:  # nothing started: the file stays the failed task's
        os.replace(upload_path(task_id), upload_path(row.id))
    return task


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
    before = checkpoint["before"] if checkpoint else user.imported_post_count()
    mark = {"before": before}
    progress.write(0, N_("Checking the file…"), mark)
    config = current_app.config
    limits = dataclasses.replace(
        importer.DEFAULT_LIMITS, upload_bytes=config["MICROBLOG_IMPORT_MAX_BYTES"]
    )
    archive = importer.open_archive(path, limits)
    with tempfile.TemporaryFile(dir=imports_dir()) as checked:
        batch_size = config["MICROBLOG_IMPORT_BATCH_SIZE"]
        importable = importer.spool(_checking(archive, progress), checked, batch_size)
        importing = nphrase("Importing %(num)s post…", "Importing %(num)s posts…", importable)
        progress.write(CHECK_SHARE, store_phrases(importing), mark)
        read = 0
        for batch in importer.unspool(checked):
            user.import_posts_json(batch)
            db.session.commit()
            read = min(read + batch_size, importable)  # every batch is full but the last
            if after_import_batch:
                after_import_batch(read)
            done = CHECK_SHARE + (100 - CHECK_SHARE) * read // max(importable, 1)
            progress.update(done, checkpoint=lambda: mark)
    followed = user.follow_usernames(archive.following) if archive.following else 0
    db.session.commit()
    added = user.imported_post_count() - before
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
            remove_task_files(task.id)
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


# --- avatars ------------------------------------------------------------------------------


def avatars_dir() -> Path:
    path = Path(current_app.config["DATA_DIR"]) / "avatars"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def send_avatar(file: str) -> Response:
    """An uploaded picture's file, cached for good: its URL changes with the picture."""
    response = send_from_directory(avatars_dir(), file, mimetype="image/webp", max_age=31536000)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


def start_avatar(user: User, upload: FileStorage) -> Task | None:
    """Store an uploaded picture and launch the task that makes the user's avatar of it."""
    return start_with_upload(user, upload, process_avatar, N_("Changing your picture"))


def check_avatar(data: bytes) -> None:
    """Refuse at once, from its size and header, a file the worker would refuse
    (`avatars.AvatarTooLarge` or `avatars.AvatarError`, with the reason)."""
    avatars.check_upload(data, max_bytes=current_app.config["MICROBLOG_AVATAR_MAX_BYTES"])


def write_avatar(user: User, data: bytes) -> None:
    """Check and convert an uploaded picture, put its files in place, and point the user at
    them (commits). `AvatarError` says why a file is refused."""
    max_bytes = current_app.config["MICROBLOG_AVATAR_MAX_BYTES"]
    pictures = avatars.process_upload(data, max_bytes=max_bytes)
    for size, picture in pictures.items():
        final = avatars_dir() / user.avatar_file(size)
        partial = final.with_name(final.name + ".part")
        partial.write_bytes(picture)
        os.replace(partial, final)  # a page never gets half a picture
    user.set_avatar(max(int(time.time()), (user.avatar_version or 0) + 1))
    db.session.commit()
    federation_out.profile_updated(user)


@tracked
@huey.task(context=True, name="process_avatar")
def process_avatar(user_id: int, task: HueyTask = None) -> int:
    """Make the user's avatar from the picture uploaded for this task, then delete it."""
    with app_context():
        path = upload_path(task.id)
        subjects = running_task(task.id, user_id)
        if subjects is None:
            path.unlink(missing_ok=True)
            return 0
        row, user = subjects
        with consuming(path):
            Progress(row.id, 1).write(10, N_("Making your new picture…"))
            write_avatar(user, path.read_bytes())
        done = N_("Your new picture is in place.")
        Task.change(row.id, [TaskStatus.RUNNING], message=done)
        return 0


# --- delete an account ----------------------------------------------------------------------


@tracked
@huey.task(context=True, name="delete_account")
def delete_account(user_id: int, task: HueyTask = None) -> int:
    """Delete a (disabled) account and everything in it; the number of posts deleted. Its
    own Task row goes with the account at the end."""
    with app_context():
        subjects = running_task(task.id, user_id)
        if subjects is None:
            return 0
        row, user = subjects
        total = user.posts_count()
        progress = Progress(row.id, total + 1, row.progress)
        deleting = nphrase(
            "Deleting the account and its %(num)s post…",
            "Deleting the account and its %(num)s posts…",
            total,
        )
        progress.write(row.progress, store_phrases(deleting))
        deleted = delete_user(user, progress)
        log.info("Task %s: deleted user %s and %d posts", task.id, user_id, deleted)
        return deleted


def start_account_deletion(user: User) -> Task | None:
    """Lock the account (no sign-in, every session and token ended) and launch the task
    that deletes it; None when a deletion is already under way."""
    user.disable()
    db.session.commit()
    return user.launch_task(delete_account, N_("Deleting your account"))


# --- mail -------------------------------------------------------------------------------


def _mail_user(what: str, user_id: int, send: Callable[..., bool], *args: Any) -> bool:
    """Call `send(user, *args)` to mail `what`, in a fresh app context; False when the
    user is gone.

    SMTP failures propagate, so Huey retries them after MAIL_RETRY_DELAY.
    """
    with app_context():
        user = db.session.get(User, user_id)
        if user is None:
            return False
        try:
            return send(user, *args)
        except Exception:
            log.warning("Could not send %s to user %s", what, user_id)
            raise


@huey.task(retries=MAIL_RETRIES, retry_delay=MAIL_RETRY_DELAY, name="send_password_reset")
def send_password_reset(user_id: int) -> bool:
    """Mail a password reset link. The token is made here, when the mail is written: it is
    valid for as long as the password it was made from."""
    return _mail_user("the password reset email", user_id, send_password_reset_email)


@huey.task(retries=MAIL_RETRIES, retry_delay=MAIL_RETRY_DELAY, name="send_email_change")
def send_email_change(user_id: int, new_email: str) -> bool:
    """Mail the confirmation link to the new address and a notice to the current one."""
    return _mail_user("the email change confirmation", user_id, send_email_change_emails, new_email)


# --- the language of posts ----------------------------------------------------------------

# Posts looked at per transaction: the write lock is held a few milliseconds at a time.
LANGUAGE_BATCH_SIZE = 500
# One pass at a time in a process; a pass asked for meanwhile makes it go round once more.
_detecting_languages = threading.Lock()
_detect_again = threading.Event()
# Users' tasks running in this process: the language lookup gives way to them (it can wait,
# they are being watched), for at most this long at a time in case an end goes unnoticed.
_users_tasks: set[str] = set()
_users_tasks_changed = threading.Condition()
GIVE_WAY_MAX_SECONDS = 30.0


@huey.signal(S.SIGNAL_EXECUTING)
def users_task_started(signal: str, task: HueyTask, *args: Any) -> None:
    if task.name in TRACKED_TASKS:
        with _users_tasks_changed:
            _users_tasks.add(task.id)


@huey.signal(
    S.SIGNAL_COMPLETE, S.SIGNAL_ERROR, S.SIGNAL_CANCELED, S.SIGNAL_INTERRUPTED, S.SIGNAL_REVOKED
)
def users_task_ended(signal: str, task: HueyTask, *args: Any) -> None:
    with _users_tasks_changed:
        _users_tasks.discard(task.id)
        _users_tasks_changed.notify_all()


def give_way_to_users_tasks() -> None:
    with _users_tasks_changed:
        _users_tasks_changed.wait_for(
            lambda: not _users_tasks or stopping.is_set(), timeout=GIVE_WAY_MAX_SECONDS
        )


# Posts from before language detection, and any an import left, get theirs when a
# consumer starts.
@on_consumer_start
@huey.task(name="detect_post_languages")
def detect_post_languages() -> int:
    """Fill in the language of every post that has none yet (posts from before detection,
    imported ones), in short transactions; how many were looked at.

    Resumable by construction: what is left is exactly the posts still without one (a post
    whose language cannot be told gets "", so the pass ends). It stops when the consumer
    does; the next one's start carries on.
    """
    if not _detecting_languages.acquire(blocking=False):
        _detect_again.set()  # the running pass may be past the posts this one is for
        return 0
    # In a child process: the model would add its memory to the worker's for good.
    detector = language_detection.ChildDetector()
    try:
        with app_context():
            after, total = 0, 0
            while not stopping.is_set():
                give_way_to_users_tasks()
                after, count = Post.detect_languages(
                    after, LANGUAGE_BATCH_SIZE, detector.detect_all
                )
                db.session.commit()
                total += count
                if not count and not _detect_again.is_set():
                    break
                if not count:
                    _detect_again.clear()
                    after = 0
        if total:
            log.info("Looked up the language of %d posts", total)
        return total
    finally:
        detector.close()
        _detecting_languages.release()


@huey.signal(S.SIGNAL_COMPLETE, S.SIGNAL_ERROR, S.SIGNAL_CANCELED)
def detect_languages_after_import(signal: str, task: HueyTask, *args: Any) -> None:
    """An import (finished, failed or cancelled) may have added posts: look at them.
    Imports add posts without looking at their language, which keeps them fast."""
    if task.name == "import_posts":
        detect_post_languages()


# --- periodic housekeeping ----------------------------------------------------------------


@huey.periodic_task(crontab(minute="*"), name="reap_stale_tasks")
def reap_stale_tasks() -> int:
    """Fail running tasks whose own heartbeat stopped while their consumer lives on (a hung
    thread), or that predate consumer ids. A dead consumer's tasks are recovered instead."""
    live = {consumer.id for consumer in live_consumers()}
    with app_context():
        stale_after = current_app.config["MICROBLOG_TASK_STALE_SECONDS"]
        stale = [
            row
            for row in db.session.scalars(Task.stale(timedelta(seconds=stale_after)))
            if row.consumer_id is None or row.consumer_id in live
        ]
        for row in stale:
            message = N_(
                "The background worker stopped before this task finished. Please try again."
            )
            if Task.change(row.id, [TaskStatus.RUNNING], status=TaskStatus.FAILED, message=message):
                remove_task_files(row.id)
                log.warning("Task %s failed: its heartbeat stopped", row.id)
        return len(stale)


@huey.periodic_task(crontab(minute="*/10"), name="delete_expired_exports")
def delete_expired_exports() -> int:
    """Delete export files past their expiry date; the history then shows them as expired."""
    with app_context():
        expired = db.session.scalars(Task.expired_results()).all()
        for row in expired:
            (exports_dir() / row.result_file).unlink(missing_ok=True)
            row.result_file = None
        db.session.commit()
        if expired:
            log.info("Deleted %d expired exports", len(expired))
        return len(expired)


@huey.periodic_task(crontab(minute="*/10"), name="delete_expired_uploads")
def delete_expired_uploads() -> int:
    """Delete uploaded files no task needs any more (see `keeps_upload`): a failed import's
    once it expires, and any left by a process that died; returns how many."""
    stored_before = time.time() - 3600  # a file younger than this may await its Task row
    deleted = 0
    with app_context():
        for path in imports_dir().iterdir():
            row = db.session.get(Task, path.name)
            if row is None and path.stat().st_mtime > stored_before:
                continue
            if row is None or not keeps_upload(row):
                path.unlink(missing_ok=True)
                deleted += 1
        db.session.rollback()
    if deleted:
        log.info("Deleted %d uploads no task needs", deleted)
    return deleted


@huey.periodic_task(crontab(minute="30", hour="3"), name="daily_backup")
def daily_backup() -> str:
    """Back up the SQLite database into <data dir>/backups/, keeping the newest
    MICROBLOG_BACKUP_KEEP; returns the new file's path ("" when there is nothing to do)."""
    with app_context():
        keep = current_app.config["MICROBLOG_BACKUP_KEEP"]
        try:
            source = backup.sqlite_path(current_app.config["SQLALCHEMY_DATABASE_URI"])
        except backup.BackupError:
            return ""  # PostgreSQL: pg_dump's job
        if keep == 0:
            return ""
        directory = Path(current_app.config["DATA_DIR"]) / backup.BACKUP_DIR
        target = backup.take(source, directory / backup.timestamped_name(backup.DAILY_PREFIX))
        for old in backup.prune(directory, keep):
            log.info("Deleted the old backup %s", old)
        log.info("Backed up the database to %s", target)
        return str(target)


# --- tasks a user may start (the web form and POST /api/tasks) ----------------------------


def start_export(user: User) -> Task | None:
    """Launch "export your posts" for `user`; None when one is already in progress."""
    return user.launch_task(export_posts, N_("Exporting your posts"))


USER_TASKS = {"export_posts": start_export}
# Tasks that start from an uploaded file (a multipart POST /api/tasks, field `file`).
UPLOAD_TASKS = {"import_posts": start_import}
# What an admin may start again once it failed (`retry`).
RETRYABLE_TASKS = {*USER_TASKS, *UPLOAD_TASKS}
