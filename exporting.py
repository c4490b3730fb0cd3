"""Export your posts: the task that writes a user's posts to a JSON file (resumable after a
crash) and mails it, and the download."""

import functools
import os
import smtplib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import sqlalchemy as sa
from flask import Response, current_app, render_template, send_file
from flask_babel import force_locale
from flask_babel import gettext as _
from huey.api import Task as HueyTask
from sqlalchemy.engine.interfaces import DBAPICursor

import avatars
from database import db, isoformat_utc
from follows import Follows
from i18n import N_, mail_language, nphrase, phrase, store_phrases
from jobs import Task, TaskStatus, finished_exports
from mailer import mail_configured, send_email, site_link
from models import Post, User
from task_support import (
    MAIL_RETRIES,
    MAIL_RETRY_DELAY,
    exports_dir,
    log,
    running_task,
)
from user_tasks import launch_task
from worker import Progress, app_context, huey, on_task_over, tracked


def send_export(task: Task) -> Response | None:
    """The task's export as a `posts.json` download, or None when there is none to give
    (not finished, failed, expired, or the file is gone)."""
    path = exports_dir() / (task.result_file or "")
    if not task.has_download or not path.is_file():
        return None
    return send_file(
        path, mimetype="application/json", as_attachment=True, download_name="posts.json"
    )


@on_task_over
def remove_partial_export(task_id: str) -> None:
    (exports_dir() / f"{task_id}.json.part").unlink(missing_ok=True)


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
    return b'\n], "following": ' + orjson.dumps(Follows(user).following_usernames()) + b"}\n"


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
    older = db.session.scalars(finished_exports(user_id, "export_posts").offset(keep)).all()
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


def start_export(user: User) -> Task | None:
    """Launch "export your posts" for `user`; None when one is already in progress."""
    return launch_task(user, export_posts, N_("Exporting your posts"))
