"""Work queued for after a commit: a task that reads rows (or tells another server of them)
is enqueued only once they are committed, and never for a transaction rolled back."""

import logging
from collections.abc import Hashable

import sqlalchemy as sa
import sqlalchemy.orm as so
from huey.api import TaskWrapper

from database import db

log = logging.getLogger("huey.microblog")

PENDING = "commit_hooks.pending"


def after_commit(task: TaskWrapper, *args: Hashable, session: so.Session | None = None) -> None:
    """Enqueue `task(*args)` once the current transaction of `session` (default: the app's)
    commits; the same call twice in one transaction is enqueued once."""
    store = session if session is not None else db.session
    store.info.setdefault(PENDING, {})[(task.name, args)] = (task, args)


@sa.event.listens_for(so.Session, "after_commit")
def enqueue_pending(session: so.Session) -> None:
    for task, args in session.info.pop(PENDING, {}).values():
        try:
            task(*args)
        except Exception:  # the queue is down: the row is committed; say so and go on
            log.exception("Could not queue %s%s after a commit", task.name, args)


@sa.event.listens_for(so.Session, "after_rollback")
def forget_pending(session: so.Session) -> None:
    session.info.pop(PENDING, None)
