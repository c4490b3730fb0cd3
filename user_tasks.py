"""A user's background tasks: launching one (row first, then the queue), the banners on
every page, and the history."""

import json
import logging
import uuid
from typing import Any

import sqlalchemy as sa
from huey.api import TaskWrapper

from database import _insert_unless_conflict, db, utcnow
from i18n import phrase, store_phrases
from jobs import TASK_BANNER_LIFETIME, Task, TaskStatus
from models import User


def launch_task(
    user: User, task_function: TaskWrapper, description: str, *args: Any, task_id: str | None = None
) -> Task | None:
    """Record a task for `user`, commit, then enqueue it with the same id.

    The row is committed first so the worker always finds it, whichever process is
    faster. The task function is called as `task_function(user_id, *args)`. `task_id` is
    for a task whose input was stored under its id before it starts (an upload).

    Returns None when a task of that name is already queued or running for this user
    (the partial unique index decides, so concurrent requests start one task), and a
    `failed` row when the queue could not take it.
    """
    task_id, user_id = task_id or str(uuid.uuid4()), user.id
    row = {
        "id": task_id,
        "name": task_function.name,
        "description": description,
        "user_id": user_id,
        # Kept so that a task whose worker died can be put back in the queue as it was.
        "arguments": json.dumps([user_id, *args]),
    }
    inserted = db.session.execute(_insert_unless_conflict(Task, row)).first() is not None
    if inserted:
        # In the same commit as the row: every open page learns of it while it waits.
        db.session.get_one(Task, task_id).notify()
    db.session.commit()
    if not inserted:
        return None
    try:
        # In Huey's immediate mode (tests) this runs the whole task before returning.
        task_function.huey.enqueue(task_function.task_class((user_id, *args), None, id=task_id))
    except Exception as exc:  # the queue is down: the row must not stay "queued" forever
        logging.getLogger("microblog").exception("Could not enqueue task %s", task_id)
        Task.change(
            task_id,
            [TaskStatus.QUEUED],
            status=TaskStatus.FAILED,
            message=store_phrases(phrase("Could not start: %(reason)s", reason=str(exc))),
        )
    return db.session.get(Task, task_id, populate_existing=True)


def tasks_in_progress(user: User) -> list[Task]:
    """Active tasks plus recently finished ones not dismissed yet: the page banners."""
    return list(db.session.scalars(banner_tasks(user)))


def banner_tasks(user: User) -> sa.Select[Task]:
    """The query of `tasks_in_progress`, oldest first."""
    recent = utcnow() - TASK_BANNER_LIFETIME
    return (
        sa.select(Task)
        .where(
            Task.user_id == user.id,
            sa.or_(
                Task.status.in_(TaskStatus.active()),
                sa.and_(Task.dismissed.is_(False), Task.finished_at > recent),
            ),
        )
        .order_by(Task.created_at)
    )


def task_history(user: User) -> sa.Select:
    """The user's tasks, newest first."""
    return sa.select(Task).where(Task.user_id == user.id).order_by(Task.created_at.desc())
