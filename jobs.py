"""Background jobs as the database sees them: `Task` (what users see of a Huey task),
its lifecycle (`TaskStatus`, `TASK_TRANSITIONS`) and `Consumer` (a worker and its
heartbeat). The machinery that runs them is worker.py; their bodies are tasks.py and the
modules it loads."""

import enum
import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Optional

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from i18n import N_, show_stored
from notifications import notify

if TYPE_CHECKING:
    from huey import Huey


from database import (
    Model,
    db,
    execute_dml,
    partial_unique_index,
    utcnow,
)

CONSUMER_ID_MAX = 64

# --- background tasks ----------------------------------------------------------------
#
# A task is a Huey task plus a `Task` row keyed by the same id: Huey runs it, the row is
# what users see (status, progress, message) and survives Huey keeping no results.


class TaskStatus(enum.StrEnum):
    """A task's state; `TASK_TRANSITIONS` declares the moves between them.

    The one list of these words: the column, the partial unique index, the templates,
    the page script (through the server-rendered banner) and the OpenAPI document use it.
    """

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def active(cls) -> tuple["TaskStatus", ...]:
        return (cls.QUEUED, cls.RUNNING)

    @classmethod
    def terminal(cls) -> tuple["TaskStatus", ...]:
        return (cls.DONE, cls.FAILED, cls.CANCELLED)

    @property
    def is_active(self) -> bool:
        return self in TaskStatus.active()

    @property
    def label(self) -> str:
        """The word shown to users ("Running"), in their language."""
        return str(_STATUS_LABELS[self])

    @property
    def alert(self) -> str:
        """The Bootstrap contextual class of this state's banner."""
        return _STATUS_ALERTS[self]

    @property
    def default_text(self) -> str:
        """What a task in this state says when it has no message of its own."""
        return str(_STATUS_TEXTS[self])


_STATUS_ALERTS = {
    TaskStatus.QUEUED: "info",
    TaskStatus.RUNNING: "info",
    TaskStatus.DONE: "success",
    TaskStatus.FAILED: "danger",
    TaskStatus.CANCELLED: "secondary",
}
_STATUS_LABELS = {
    TaskStatus.QUEUED: _l("Queued"),
    TaskStatus.RUNNING: _l("Running"),
    TaskStatus.DONE: _l("Done"),
    TaskStatus.FAILED: _l("Failed"),
    TaskStatus.CANCELLED: _l("Cancelled"),
}
_STATUS_TEXTS = {
    TaskStatus.QUEUED: _l("Waiting for the background worker…"),
    TaskStatus.RUNNING: _l("Working…"),
    TaskStatus.DONE: _l("Done."),
    TaskStatus.FAILED: _l("Something went wrong."),
    TaskStatus.CANCELLED: _l("Cancelled."),
}
# Every move a task's row may make, and why. `Task.change` is the only way a row's status
# changes (bulk changes included), and it refuses any move that is not listed here.
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset(
        {
            TaskStatus.RUNNING,  # a consumer took it
            TaskStatus.CANCELLED,  # its owner cancelled it before it ran
            TaskStatus.FAILED,  # it could not be queued, or a restore emptied the queue
        }
    ),
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.RUNNING,  # progress, a cancel request, its result file, its message
            TaskStatus.DONE,
            TaskStatus.FAILED,  # an error, a stopped heartbeat, too many crashes, a restore
            TaskStatus.CANCELLED,  # it saw its cancel request, or died while cancelling
            TaskStatus.QUEUED,  # its consumer stopped or died: it runs again, from its checkpoint
        }
    ),
    # Finished is final: retrying a failed task starts a new one.
    TaskStatus.DONE: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


class InvalidTransition(ValueError):
    """A status change that `TASK_TRANSITIONS` does not allow: a bug in the caller."""


def check_transitions(table: dict[TaskStatus, frozenset[TaskStatus]]) -> None:
    """Refuse a table that misses a state, or in which a finished task could move."""
    if set(table) != set(TaskStatus):
        raise InvalidTransition(f"states without an entry: {set(TaskStatus) - set(table)}")
    for state in TaskStatus.terminal():
        if table[state]:
            raise InvalidTransition(f"{state} is final but may move to {set(table[state])}")


def check_transition(from_states: Iterable[str], to: TaskStatus | None) -> None:
    """Raise unless a row in any of `from_states` may move to `to` (None: stays as it is)."""
    for state in from_states:
        if (to or state) not in TASK_TRANSITIONS[TaskStatus(state)]:
            raise InvalidTransition(f"a task cannot go from {state} to {to or state}")


check_transitions(TASK_TRANSITIONS)

# The words of the other moments a task's row records; one place for each, like the above.
# Stored in English (N_ only marks them for the catalogue); translated when shown.
TASK_TEXT_WORKER_LOST = N_("The background worker stopped; waiting for it to restart…")
TASK_TEXT_CANCELLING = N_("Cancelling…")
TASK_TEXT_CANCEL_TOO_LATE = N_("Finished before it could be cancelled.")
# A task whose worker died this many times is not tried again: it is probably what kills it.
TASK_MAX_CRASHES = 3
TASK_TEXT_TOO_MANY_CRASHES = (
    f"The background worker stopped {TASK_MAX_CRASHES} times while running this task, "
    "so it was not tried again."
)


def _status_in(statuses: Iterable[str]) -> str:
    """`status IN ('queued', 'running')`, for index predicates (which take plain SQL)."""
    return f"status IN ({', '.join(repr(str(status)) for status in statuses)})"


# A finished task keeps its banner for this long unless the user dismisses it.
TASK_BANNER_LIFETIME = timedelta(days=1)


class Task(Model):
    """A background job: the Huey task with the same id plus what the user sees of it."""

    __table_args__ = (
        # "This user's active tasks": the banners on every page.
        sa.Index("ix_task_user_id_status", "user_id", "status"),
        # One queued/running task per (user, name): a double click or two tabs start one task.
        partial_unique_index(
            "uq_task_one_active_per_user", "user_id", "name", where=_status_in(TaskStatus.active())
        ),
    )

    id: so.Mapped[str] = so.mapped_column(sa.String(36), primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(128))
    description: so.Mapped[str] = so.mapped_column(sa.String(128))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    # Stored as its plain word (VARCHAR, no CHECK): the schema is unchanged by the enum.
    status: so.Mapped[TaskStatus] = so.mapped_column(
        sa.Enum(
            TaskStatus,
            native_enum=False,
            create_constraint=False,
            length=16,
            values_callable=lambda statuses: [status.value for status in statuses],
            validate_strings=True,
        ),
        default=TaskStatus.QUEUED,
    )
    progress: so.Mapped[int] = so.mapped_column(default=0)
    message: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    cancel_requested: so.Mapped[bool] = so.mapped_column(default=False)
    dismissed: so.Mapped[bool] = so.mapped_column(default=False)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    started_at: so.Mapped[datetime | None]
    # The heartbeat: every progress write moves it; the reaper fails rows where it stops.
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    finished_at: so.Mapped[datetime | None]
    result_file: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    result_size: so.Mapped[int | None] = so.mapped_column(sa.BigInteger)
    expires_at: so.Mapped[datetime | None]
    # The task function's arguments (JSON list), to queue it again after a crash.
    arguments: so.Mapped[str | None] = so.mapped_column(sa.Text)
    # The consumer running it (see `Consumer`); its death puts the task back in the queue.
    consumer_id: so.Mapped[str | None] = so.mapped_column(sa.String(CONSUMER_ID_MAX))
    # How many times a worker died under it.
    crashes: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    # Where a resumed run continues (JSON, the task's own format), written with the progress.
    checkpoint: so.Mapped[str | None] = so.mapped_column(sa.Text)

    # Typed loosely: models.py (where User lives) imports this module, not the other way.
    user: so.Mapped[Any] = so.relationship("User", back_populates="tasks")

    def __repr__(self) -> str:
        return f"<Task {self.name} {self.id} {self.status}>"

    @classmethod
    def owned_by(cls, user_id: int, task_id: str) -> sa.Select:
        """That user's task with that id: anyone else's looks exactly like a missing one."""
        return sa.select(cls).where(cls.id == task_id, cls.user_id == user_id)

    @classmethod
    def active_for(cls, user_id: int, name: str) -> Optional["Task"]:
        """The user's queued or running task of that name, if any."""
        query = sa.select(cls).where(
            cls.user_id == user_id, cls.name == name, cls.status.in_(TaskStatus.active())
        )
        return db.session.scalar(query)

    @property
    def is_active(self) -> bool:
        return self.status.is_active

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    @property
    def has_download(self) -> bool:
        return self.status == TaskStatus.DONE and bool(self.result_file) and not self.is_expired

    @property
    def download_expired(self) -> bool:
        """Finished with a file that has since been deleted."""
        return (
            self.status == TaskStatus.DONE
            and self.result_size is not None
            and not (self.has_download)
        )

    @property
    def status_text(self) -> str:
        """The sentence the banner, the task history, the notification and the API show, in
        the reader's language (the worker stores it untranslated: see `store_phrases`)."""
        return show_stored(self.message) if self.message else self.status.default_text

    @property
    def description_text(self) -> str:
        """What the task is ("Exporting your posts"), in the reader's language."""
        return gettext(self.description)

    @property
    def worker_lost_text(self) -> str:
        """What a task says while it waits to be put back in the queue."""
        return gettext(TASK_TEXT_WORKER_LOST)

    def worker_lost(self, live_consumer_ids: Collection[str]) -> bool:
        """Running on a consumer that is no longer alive: it waits to be put back in the queue."""
        return (
            self.status == TaskStatus.RUNNING
            and self.consumer_id is not None
            and self.consumer_id not in live_consumer_ids
        )

    def get_checkpoint(self) -> dict | None:
        return json.loads(self.checkpoint) if self.checkpoint else None

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or utcnow()) - self.started_at

    @property
    def shows_banner(self) -> bool:
        """Active, or finished recently and not dismissed (as `user_tasks.tasks_in_progress`)."""
        if self.is_active:
            return True
        recent = utcnow() - TASK_BANNER_LIFETIME
        return not self.dismissed and self.finished_at is not None and self.finished_at > recent

    def dismiss(self) -> bool:
        """Hide a finished task's banner; False (nothing done) while it is still active."""
        if self.is_active:
            return False
        self.dismissed = True
        return True

    def to_notification(self) -> dict:
        """The `task_progress` payload: enough for the page to know what changed."""
        return {
            "task_id": self.id,
            "name": self.name,
            "progress": self.progress,
            "status": self.status,
            "message": self.status_text,
            "result_size": self.result_size if self.has_download else None,
        }

    def notify(self) -> None:
        """Queue a `task_progress` notification for the owner (committed by the caller)."""
        notify(self.user_id, "task_progress", self.to_notification())

    @classmethod
    def change(
        cls,
        task_id: str,
        only_from: Iterable[str],
        *conditions: sa.ColumnElement[bool],
        **values: Any,
    ) -> Optional["Task"]:
        """Set `values` if the row is in one of the `only_from` states (and meets any
        further `conditions`); notify and commit.

        Every status change goes through this compare-and-set, so a late signal (say
        "complete" after the user cancelled) cannot overwrite a newer state, and only the
        moves in `TASK_TRANSITIONS` are made (any other raises `InvalidTransition`). It
        commits either way: the UPDATE has taken SQLite's write lock, which must not be held.
        """
        check_transition(only_from, values.get("status"))
        now = utcnow()
        values.setdefault("updated_at", now)
        if values.get("status") in TaskStatus.terminal():
            values.setdefault("finished_at", now)
        result = execute_dml(
            sa.update(cls)
            .where(cls.id == task_id, cls.status.in_(tuple(only_from)), *conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            db.session.commit()
            return None
        task = db.session.get_one(cls, task_id, populate_existing=True)
        task.notify()
        db.session.commit()
        return task

    def cancel(self, queue: "Huey") -> str | None:
        """Cancel this task: "cancelled", "cancelling" (stops at its next tick) or None (over).

        A queued task is revoked in `queue` (a Huey instance); a running one gets a flag
        that it checks at each progress write.
        """
        if Task.change(self.id, [TaskStatus.QUEUED], status=TaskStatus.CANCELLED, message=None):
            queue.revoke_by_id(self.id, revoke_once=True)
            return "cancelled"
        if Task.change(
            self.id, [TaskStatus.RUNNING], cancel_requested=True, message=TASK_TEXT_CANCELLING
        ):
            return "cancelling"
        return None

    @classmethod
    def finish(cls, task_id: str, **values: Any) -> Optional["Task"]:
        """A running task ends `done`; one whose cancel came too late says so."""
        message = values.pop("message", cls.message)
        late = sa.case((cls.cancel_requested, TASK_TEXT_CANCEL_TOO_LATE), else_=message)
        return cls.change(
            task_id,
            [TaskStatus.RUNNING],
            status=TaskStatus.DONE,
            progress=100,
            message=late,
            **values,
        )

    @classmethod
    def record_progress(
        cls, task_id: str, percent: int, message: str | None = None, checkpoint: dict | None = None
    ) -> bool:
        """Move the bar (never backwards) and the heartbeat of a running task, and notify;
        with a `checkpoint` (JSON-able), also record where a resumed run would continue.

        One UPDATE and one commit. False when the task should stop: the user asked to
        cancel it, or it is no longer running (reaped, or its row was deleted).
        """
        values = {
            "progress": sa.case((cls.progress < percent, percent), else_=cls.progress),
            "updated_at": utcnow(),
        }
        if message is not None:
            values["message"] = message
        if checkpoint is not None:
            values["checkpoint"] = json.dumps(checkpoint)
        result = execute_dml(
            sa.update(cls)
            .where(
                cls.id == task_id,
                cls.status == TaskStatus.RUNNING,
                cls.cancel_requested.is_(False),
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            db.session.commit()
            return False
        db.session.get_one(cls, task_id, populate_existing=True).notify()
        db.session.commit()
        return True


# --- queries over many tasks: the reaper, recovery, retention and the admin's dashboard ---


def stale_tasks(older_than: timedelta) -> sa.Select:
    """Running rows whose own heartbeat stopped (their thread hangs, or they predate
    consumer ids)."""
    cutoff = utcnow() - older_than
    return sa.select(Task).where(Task.status == TaskStatus.RUNNING, Task.updated_at < cutoff)


def count_by_status() -> dict[TaskStatus, int]:
    """How many tasks are in each state (every state listed, zero included)."""
    rows = db.session.execute(sa.select(Task.status, sa.func.count()).group_by(Task.status))
    counts = dict.fromkeys(TaskStatus, 0)
    counts.update({status: count for status, count in rows})
    return counts


def recent_failures(limit: int = 20) -> Sequence[Task]:
    """The last `limit` failed tasks, newest first, with their owners."""
    query = (
        sa.select(Task)
        .where(Task.status == TaskStatus.FAILED)
        .options(so.joinedload(Task.user))
        .order_by(Task.finished_at.desc(), Task.created_at.desc())
        .limit(limit)
    )
    return db.session.scalars(query).all()


def fail_all_active(message: str) -> int:
    """Fail every queued or running task (after a restore: the queue no longer holds
    them), each through `change`, so that its owner's page is told. Returns how many."""
    active = db.session.scalars(sa.select(Task.id).where(Task.status.in_(TaskStatus.active())))
    failed = [
        Task.change(task_id, TaskStatus.active(), status=TaskStatus.FAILED, message=message)
        for task_id in active.all()
    ]
    return sum(task is not None for task in failed)


def requeue_lost(task_id: str, consumer_id: str | None) -> Task | None:
    """The consumer running this task died: queue it again, unless it was being cancelled
    (then it is cancelled) or this was its last allowed crash (then it fails).

    A compare-and-set on the dead consumer's id: when several live consumers notice the
    same death at once, one of them wins. The caller enqueues a task that comes back
    `queued`.
    """
    row = db.session.get(Task, task_id, populate_existing=True)
    if row is None:
        return None
    values: dict[str, Any] = {"consumer_id": None, "crashes": row.crashes + 1}
    if row.cancel_requested:
        values.update(status=TaskStatus.CANCELLED, message=None)
    elif row.crashes + 1 >= TASK_MAX_CRASHES:
        values.update(status=TaskStatus.FAILED, message=TASK_TEXT_TOO_MANY_CRASHES)
    else:
        values.update(status=TaskStatus.QUEUED, message=TASK_TEXT_WORKER_LOST)
    same_run = (
        Task.consumer_id.is_(None) if consumer_id is None else Task.consumer_id == consumer_id
    )
    return Task.change(
        task_id, [TaskStatus.RUNNING], same_run, Task.crashes == row.crashes, **values
    )


def lost_tasks(live_consumer_ids: Collection[str]) -> sa.Select:
    """Running rows whose consumer is not among the live ones: it died under them."""
    return sa.select(Task.id, Task.consumer_id).where(
        Task.status == TaskStatus.RUNNING,
        Task.consumer_id.is_not(None),
        Task.consumer_id.not_in(list(live_consumer_ids)),
    )


def finished_exports(user_id: int, name: str) -> sa.Select:
    """The user's finished tasks of that name that still have a file, newest first."""
    return (
        sa.select(Task)
        .where(
            Task.user_id == user_id,
            Task.name == name,
            Task.status == TaskStatus.DONE,
            Task.result_file.is_not(None),
        )
        .order_by(Task.finished_at.desc(), Task.id)
    )


def expired_results() -> sa.Select:
    return sa.select(Task).where(Task.result_file.is_not(None), Task.expires_at <= utcnow())


class Consumer(Model):
    """A background worker process (Huey consumer) and its heartbeat.

    Each consumer writes its row every few seconds while it runs and deletes it when it
    stops cleanly. A row whose heartbeat stopped is a consumer that died: the tasks it was
    running (`Task.consumer_id`) are put back in the queue by a live one.
    """

    id: so.Mapped[str] = so.mapped_column(sa.String(CONSUMER_ID_MAX), primary_key=True)
    hostname: so.Mapped[str] = so.mapped_column(sa.String(255))
    pid: so.Mapped[int]
    started_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    heartbeat_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    @classmethod
    def beat(cls, consumer_id: str, hostname: str, pid: int) -> None:
        """Record that this consumer is alive (one UPDATE; an INSERT the first time)."""
        now = utcnow()
        updated = execute_dml(
            sa.update(cls).where(cls.id == consumer_id).values(heartbeat_at=now)
        ).rowcount
        if updated != 1:
            db.session.add(cls(id=consumer_id, hostname=hostname, pid=pid, heartbeat_at=now))

    @classmethod
    def seen_since(cls, moment: datetime) -> sa.Select:
        return sa.select(cls).where(cls.heartbeat_at >= moment)

    @classmethod
    def forget(cls, consumer_ids: Iterable[str]) -> None:
        """Remove consumers that stopped (cleanly, or long ago)."""
        execute_dml(sa.delete(cls).where(cls.id.in_(list(consumer_ids))))

    @classmethod
    def silent_since(cls, moment: datetime) -> sa.Select:
        return sa.select(cls.id).where(cls.heartbeat_at < moment)
