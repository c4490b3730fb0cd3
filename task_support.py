"""What the task bodies share: the directories their files live in, the upload a task
starts from, and the Task row and user a running task works for."""

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import current_app
from huey.api import TaskWrapper
from werkzeug.datastructures import FileStorage

import worker
from database import db
from jobs import Task, TaskStatus
from models import User
from user_tasks import launch_task

log = logging.getLogger("huey.microblog")

# Huey's decorators take these when a task module is imported, before any app exists; every
# other setting a task uses is read from the app's config when it runs.
MAIL_RETRIES: int = worker.settings["MICROBLOG_MAIL_RETRIES"]
MAIL_RETRY_DELAY: float = worker.settings["MICROBLOG_MAIL_RETRY_DELAY"]


def data_dir(name: str) -> Path:
    """<data dir>/<name>, created (private) when missing."""
    path = Path(current_app.config["DATA_DIR"]) / name
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def exports_dir() -> Path:
    return data_dir("exports")


def imports_dir() -> Path:
    return data_dir("imports")


def avatars_dir() -> Path:
    return data_dir("avatars")


def running_task(task_id: str, user_id: int) -> tuple[Task, User] | None:
    """The Task row and the user a tracked task works for; None (logged) when there is
    nothing to do: either is gone, or the row is not running (cancelled meanwhile)."""
    row = db.session.get(Task, task_id)
    user = db.session.get(User, user_id)
    if row is None or user is None or row.status != TaskStatus.RUNNING:
        log.info("Task %s: nothing to do (row or user gone, or not running)", task_id)
        return None
    return row, user


def upload_path(task_id: str) -> Path:
    """Where a task's uploaded input (an archive, a picture) is kept until the task ends:
    named by the task, in <data dir>/imports/."""
    return imports_dir() / task_id


@contextmanager
def consuming(path: Path) -> Iterator[None]:
    """Delete a task's upload once the task has done its work. When it fails, is cancelled
    or is interrupted, the handlers of a task that is over decide (`importing.remove_upload`):
    a failed import keeps its upload for a retry, and a stopping consumer's task runs again
    from it."""
    try:
        yield
    except BaseException:
        db.session.rollback()
        raise
    path.unlink(missing_ok=True)


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
    task = launch_task(user, task_function, description, task_id=task_id)
    if task is None:
        path.unlink(missing_ok=True)
    return task
