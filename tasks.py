"""Background tasks, run by the Huey consumer: `huey_consumer tasks.huey`.

The web app imports this module to enqueue tasks; only the consumer runs them. The state
users see lives in the `Task` table, driven by Huey's signals (handled here) and the tasks'
own progress writes; Huey itself keeps no results. The `huey` instance and the machinery
are in worker.py; the larger task bodies have modules of their own (exporting.py,
importing.py, account_deletion.py), which this module imports so that every task is
registered wherever `tasks` is; here are the avatar, mail, language and housekeeping ones.
"""

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from huey import crontab
from huey import signals as S
from huey.api import Task as HueyTask
from werkzeug.datastructures import FileStorage

import account_deletion
import avatars
import backup
import deliveries  # noqa: F401  (registers its tasks: sending to other servers)
import exporting
import federation_in
import federation_out
import importing
import inbound  # noqa: F401  (registers its tasks: activities received, applied again)
import language_detection
import remote_pictures  # noqa: F401  (registers its tasks: remote accounts' pictures)
import worker
from avatar_store import write_avatar
from database import db, utcnow
from exporting import start_export
from i18n import N_, PhrasedError, phrase, store_phrases
from importing import UPLOAD_TASKS, keeps_upload
from jobs import Task, TaskStatus, expired_results, stale_tasks
from mailer import send_email_change_emails, send_password_reset_email
from models import Post, User
from task_support import (
    MAIL_RETRIES,
    MAIL_RETRY_DELAY,
    consuming,
    exports_dir,
    imports_dir,
    running_task,
    start_with_upload,
    upload_path,
)
from user_tasks import launch_task
from worker import (
    TRACKED_TASKS,
    Progress,
    app_context,
    huey,
    live_consumers,
    on_consumer_start,
    stopping,
    task_over,
    tracked,
)

log = logging.getLogger("huey.microblog")

# The modules with task bodies of their own: the consumer loads this module only, and each
# of their tasks must be registered with Huey wherever `tasks` is imported.
TASK_MODULES = (account_deletion, exporting, federation_in, importing)

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
        "consumer_id": worker.CONSUMER_ID,
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
        task_over(task.id)


@_row_signal(S.SIGNAL_CANCELED, S.SIGNAL_REVOKED)
def on_cancelled(task: HueyTask) -> None:
    Task.change(task.id, TaskStatus.active(), status=TaskStatus.CANCELLED, message=None)
    # Also when the row was already cancelled (a queued task, revoked by the web app): a
    # run that a crashed worker left behind has a partial file; a queued import, its upload.
    task_over(task.id)


@_row_signal(S.SIGNAL_INTERRUPTED)
def on_interrupted(task: HueyTask) -> None:
    # The consumer is stopping: put the task back so that the next consumer runs it.
    message = N_("Paused while the background worker restarts.")
    if Task.change(
        task.id, [TaskStatus.RUNNING], status=TaskStatus.QUEUED, message=message, consumer_id=None
    ):
        huey.enqueue(task)
        log.info("Task %s interrupted; re-queued", task.id)


def describe(exc: BaseException) -> str:
    """A one-line, human-readable reason (the traceback goes to the log)."""
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def reason(exc: BaseException) -> str:
    """Why a task failed, as its message: in the reader's language when the error says it
    in phrases (a bad file, a bad picture), else the error's own one line."""
    return store_phrases(*exc.phrases) if isinstance(exc, PhrasedError) else describe(exc)


# --- avatars ------------------------------------------------------------------------------


def start_avatar(user: User, upload: FileStorage) -> Task | None:
    """Store an uploaded picture and launch the task that makes the user's avatar of it."""
    return start_with_upload(user, upload, process_avatar, N_("Changing your picture"))


def check_avatar(data: bytes) -> None:
    """Refuse at once, from its size and header, a file the worker would refuse
    (`avatars.AvatarTooLarge` or `avatars.AvatarError`, with the reason)."""
    avatars.check_upload(data, max_bytes=current_app.config["MICROBLOG_AVATAR_MAX_BYTES"])


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
        federation_out.profile_updated(user)  # the followers' servers show the new picture
        done = N_("Your new picture is in place.")
        Task.change(row.id, [TaskStatus.RUNNING], message=done)
        return 0


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
            for row in db.session.scalars(stale_tasks(timedelta(seconds=stale_after)))
            if row.consumer_id is None or row.consumer_id in live
        ]
        for row in stale:
            message = N_(
                "The background worker stopped before this task finished. Please try again."
            )
            if Task.change(row.id, [TaskStatus.RUNNING], status=TaskStatus.FAILED, message=message):
                task_over(row.id)
                log.warning("Task %s failed: its heartbeat stopped", row.id)
        return len(stale)


@huey.periodic_task(crontab(minute="*/10"), name="delete_expired_exports")
def delete_expired_exports() -> int:
    """Delete export files past their expiry date; the history then shows them as expired."""
    with app_context():
        expired = db.session.scalars(expired_results()).all()
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


# --- tasks a user may start (the web form and POST /api/tasks), and starting one again ------

USER_TASKS = {"export_posts": start_export}
# What an admin may start again once it failed (`retry`).
RETRYABLE_TASKS = {*USER_TASKS, *UPLOAD_TASKS}


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
    task = launch_task(row.user, TRACKED_TASKS[row.name], row.description, task_id=task_id)
    if task is None:  # nothing started: the file stays the failed task's
        os.replace(upload_path(task_id), upload_path(row.id))
    return task
