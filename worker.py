"""The background worker's machinery, under the task bodies of tasks.py: the Huey
instance and its storage (SQLite with a doorbell, or Redis), the consumer with its
heartbeat, the recovery of tasks whose consumer died, the Flask app inside the consumer,
and the progress writes of running tasks.

tasks.py registers what the machinery needs to know of the tasks: which are tracked by a
`Task` row (`tracked`), what a task that will not run again leaves behind
(`on_task_over`), and work to queue when a consumer starts (`on_consumer_start`).
"""

import atexit
import contextlib
import functools
import importlib
import json
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from flask import (
    Flask,
    current_app,
    has_app_context,
)
from huey import Huey
from huey.api import Task as HueyTask
from huey.api import TaskWrapper
from huey.consumer import Consumer as HueyConsumer
from huey.consumer import Scheduler
from huey.exceptions import CancelExecution
from huey.registry import Registry
from huey.storage import RedisStorage, SqliteStorage
from werkzeug.local import LocalProxy

import config
from database import db, utcnow
from jobs import Consumer, Task, TaskStatus, lost_tasks, requeue_lost

if TYPE_CHECKING:
    import sqlite3

log = logging.getLogger("huey.microblog")


# The settings the queue is built from, before any app exists: read by config.py from the
# environment (and .env), as the app reads them. Everything else a task or the consumer
# needs comes from the app's own config when it runs, so that an override given to
# create_app (tests, immediate mode) reaches the worker's code paths too.
settings = config.load()
HUEY_NAME: str = settings["HUEY_NAME"]
# The bar moves at most this often: ≤ ~100 writes per task whatever its size, and no more
# than the page can show (it asks once a second while a task runs).
PROGRESS_MIN_INTERVAL = 0.25

# The app tasks run in, as gunicorn would find it. Imported by name, and only in the
# consumer, so that this module never imports the web app (imports point one way).
APP_FACTORY = "microblog:create_app"


# --- the queue ---------------------------------------------------------------------

# Set when the consumer begins to shut down; running tasks check it at each batch.
stopping = threading.Event()


class ConsumerStopping(KeyboardInterrupt):
    """Raised inside a task when the consumer stops; Huey reports it as "interrupted"."""


class Doorbell:
    """How a consumer on the SQLite queue learns at once that a task was queued, instead of
    at its next poll: a Unix datagram socket per consumer process in `<data dir>/doorbells/`,
    rung by every enqueue (the web app's, the scheduler's). Polling stays as the fallback,
    every IDLE_WAIT_SECONDS."""

    def __init__(self, directory: Path):
        directory.mkdir(mode=0o700, exist_ok=True)
        self.path = directory / f"{os.getpid()}.sock"
        self.path.unlink(missing_ok=True)  # left by a killed process that had our pid
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def wait(self, timeout: float) -> None:
        """Until the bell rings or `timeout` passes (several workers may wait at once)."""
        select.select([self.sock], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while self.sock.recv(16):
                pass

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)

    @staticmethod
    def ring_all(directory: Path) -> None:
        """Wake every consumer of this queue; forget the doorbells of dead ones."""
        with contextlib.suppress(FileNotFoundError):
            for path in directory.iterdir():
                try:
                    _bell_sender().sendto(b"!", str(path))
                except (ConnectionRefusedError, FileNotFoundError):
                    path.unlink(missing_ok=True)  # nobody listens there any more
                except OSError:
                    pass  # a full buffer: that consumer has been rung already


@functools.cache
def _bell_sender() -> socket.socket:
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    atexit.register(sender.close)  # one per process, kept for every enqueue
    return sender


# A consumer with nothing to do looks at the queue this often even if no bell rings; this
# often where it has no doorbell.
IDLE_WAIT_SECONDS = 0.5
NO_DOORBELL_POLL_SECONDS = 0.05


class LazySqliteStorage(SqliteStorage):
    """Huey's SQLite storage, creating huey.db on first use instead of at import, with a
    doorbell: an idle consumer's dequeue() waits for the next enqueue, so a task starts
    within a millisecond of being queued rather than at the workers' next poll.

    The web app imports this module; tests and `flask` commands should not create a
    queue file in the default data dir just by importing it.
    """

    blocking = True  # dequeue() waits itself: Huey's workers need not sleep between polls

    def initialize_schema(self) -> None:
        pass

    def _create_connection(self) -> "sqlite3.Connection":
        config.data_dir(Path(self.filename).parent)
        conn = super()._create_connection()
        for statement in self.ddl:  # all "create ... if not exists"
            conn.execute(statement)
        return conn

    @property
    def doorbells(self) -> Path:
        return Path(self.filename).parent / "doorbells"

    def enqueue(self, data: bytes, priority: int | None = None) -> None:
        super().enqueue(data, priority)
        Doorbell.ring_all(self.doorbells)

    def dequeue(self) -> bytes | None:
        data = super().dequeue()
        if data is None:
            # Then None: the worker asks again at once, through MicroblogHuey.dequeue, which
            # takes nothing once the consumer is stopping (the bell may ring for a task it
            # has just put back in the queue for the next consumer).
            doorbell = self.doorbell()
            if doorbell is None:
                time.sleep(NO_DOORBELL_POLL_SECONDS)
            else:
                doorbell.wait(IDLE_WAIT_SECONDS)
        return data

    _doorbell: Doorbell | None = None
    _doorbell_failed = False
    _doorbell_lock = threading.Lock()

    def doorbell(self) -> Doorbell | None:
        """This process's doorbell, made by its first dequeue (only consumers dequeue); None
        where there can be none (a data dir path too long for a socket): then it polls."""
        with self._doorbell_lock:
            if self._doorbell is None and not self._doorbell_failed:
                try:
                    self._doorbell = Doorbell(self.doorbells)
                except OSError as exc:
                    self._doorbell_failed = True
                    log.warning(
                        "No doorbell (%s): looking at the queue every %s s instead",
                        exc,
                        NO_DOORBELL_POLL_SECONDS,
                    )
            return self._doorbell

    def close_doorbell(self) -> None:
        with self._doorbell_lock:
            if self._doorbell is not None:
                self._doorbell.close()
                self._doorbell = None


class MicroblogScheduler(Scheduler):
    # How often periodic tasks are looked at (tests shorten it).
    periodic_task_seconds = settings["MICROBLOG_PERIODIC_SECONDS"]


# The consumer's nice value (0 is the web's; 19 the lowest priority).
CONSUMER_NICENESS = 10


class MicroblogConsumer(HueyConsumer):
    """Huey's consumer, plus a heartbeat, crash recovery and a stop flag that running tasks
    can see."""

    scheduler_class = MicroblogScheduler
    _last_beat = 0.0

    def __init__(self, huey: Huey, **options: Any) -> None:
        # Every file the consumer creates (huey.db, exports) must be 0600: set once, at
        # startup, before anything is opened.
        config.use_private_files()
        # Background work yields the CPU to web requests: with the exports' threads at the
        # same priority, the scheduler gives the web its share per thread, and pages slowed
        # to a crawl while a few exports ran. Only ever lowered (systemd's Nice= may be
        # lower already); set before the workers start, so their threads inherit it.
        own = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, 0, max(own, CONSUMER_NICENESS))
        super().__init__(huey, **options)

    def stop(self, graceful: bool = False) -> None:
        stopping.set()
        super().stop(graceful=graceful)

    def run(self) -> None:
        for work in CONSUMER_START_WORK:
            try:
                work()
            except Exception:
                log.exception("Could not queue %s at the consumer's start", work.__name__)
        try:
            super().run()
        finally:
            forget_consumer()
            if isinstance(self.huey.storage, LazySqliteStorage):
                self.huey.storage.close_doorbell()

    def loop(self, health_check_ts: float | None = None) -> float | None:
        # Each consumer records that it is alive this often, then looks for tasks whose
        # consumer died.
        interval = flask_app().config["MICROBLOG_CONSUMER_HEARTBEAT_SECONDS"]
        if time.monotonic() - self._last_beat >= interval:
            self._last_beat = time.monotonic()
            try:
                record_consumer_heartbeat()
                recover_lost_tasks()
            except Exception:
                log.exception("Could not record the consumer heartbeat or recover lost tasks")
        return super().loop(health_check_ts)


class TaskNames(Registry):
    """Huey's registry, naming every task in queue messages `tasks.<name>` whichever module
    defines it (Huey's own names carry the module). Task bodies moved out of tasks.py,
    where they all were, so that messages queued before, or by a web process not yet
    restarted, still find their task."""

    def task_to_string(self, task_class: type) -> str:
        return f"tasks.{task_class.__name__}"


class MicroblogHuey(Huey):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registry = TaskNames()

    def create_consumer(self, **options: Any) -> MicroblogConsumer:
        return MicroblogConsumer(self, **options)

    def dequeue(self) -> "HueyTask | None":
        # A stopping consumer takes no new task: the tasks it has just put back in the
        # queue (interrupted exports) are for the next consumer, not for an idle worker of
        # this one, which would mark them running and exit with them.
        if stopping.is_set():
            return None
        return super().dequeue()


def make_huey() -> Huey:
    """Redis when REDIS_URL is set, else SQLite in `<data dir>/huey.db` (WAL, busy timeout)."""
    if settings["REDIS_URL"]:
        return MicroblogHuey(
            HUEY_NAME, results=False, storage_class=RedisStorage, url=settings["REDIS_URL"]
        )
    return MicroblogHuey(
        HUEY_NAME,
        results=False,
        storage_class=LazySqliteStorage,
        filename=str(settings["DATA_DIR"] / "huey.db"),
        journal_mode="wal",
        timeout=10,
    )


huey = make_huey()


# --- consumers: ids, heartbeats, and the tasks of the dead ones ---------------------------
#
# Each consumer process has an id and a row in the app database (`Consumer`) whose heartbeat
# it moves every MICROBLOG_CONSUMER_HEARTBEAT_SECONDS. A task records the consumer that runs
# it. When a consumer dies (SIGKILL, the OOM killer, a crash), any live consumer notices — its
# heartbeat went silent, or, on the same machine, its process is gone — and puts the task
# back in the queue, where it resumes from its checkpoint.


def new_consumer_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# This process's id (read as `worker.CONSUMER_ID`: a consumer forked by supervise.py gets
# an id of its own, after the import).
CONSUMER_ID = new_consumer_id()


def record_consumer_heartbeat() -> None:
    """This consumer is alive (called from its main loop)."""
    with app_context():
        Consumer.beat(CONSUMER_ID, socket.gethostname(), os.getpid())
        db.session.commit()


def forget_consumer() -> None:
    """This consumer stopped cleanly: it is no longer counted among the live ones."""
    try:
        with app_context():
            Consumer.forget([CONSUMER_ID])
            db.session.commit()
    except Exception:
        log.exception("Could not remove this consumer's heartbeat")


def _process_gone(consumer: Consumer) -> bool:
    """A consumer on this machine whose process has ended: dead without waiting for its
    heartbeat to go stale (what `./run.sh` restarting a killed worker relies on)."""
    if consumer.hostname != socket.gethostname() or consumer.id == CONSUMER_ID:
        return False
    if consumer.pid == os.getpid():
        return True  # our pid, not our id: an earlier process that had the same pid
    try:
        os.kill(consumer.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # someone else's process: alive as far as we can tell
    return False


def live_consumers() -> list[Consumer]:
    """The consumers alive now: heard from in the last MICROBLOG_CONSUMER_SILENT_SECONDS,
    and not gone."""
    with app_context():
        silent = current_app.config["MICROBLOG_CONSUMER_SILENT_SECONDS"]
        since = utcnow() - timedelta(seconds=silent)
        seen = db.session.scalars(Consumer.seen_since(since)).all()
        return [consumer for consumer in seen if not _process_gone(consumer)]


def recover_lost_tasks() -> int:
    """Put the running tasks of dead consumers back in the queue; returns how many."""
    live = {consumer.id for consumer in live_consumers()}
    with app_context():
        lost = db.session.execute(lost_tasks(live)).all()
        for task_id, consumer_id in lost:
            row = requeue_lost(task_id, consumer_id)
            if row is None:
                continue  # another consumer got there first, or the task moved on
            log.warning("Task %s: its consumer %s died; now %s", task_id, consumer_id, row.status)
            if row.status == TaskStatus.QUEUED:
                enqueue_again(row)
            elif row.status != TaskStatus.RUNNING:
                task_over(row.id)
        # Dead consumers are kept a day, for whoever wants to see what happened.
        Consumer.forget(db.session.scalars(Consumer.silent_since(utcnow() - timedelta(days=1))))
        db.session.commit()
        return len(lost)


def enqueue_again(row: Task) -> None:
    """Queue a task row's Huey task again, with the same id and arguments."""
    task_function = TRACKED_TASKS[row.name]
    arguments = tuple(json.loads(row.arguments or "[]"))
    huey.enqueue(task_function.task_class(arguments, None, id=row.id))


def consumer_heartbeats() -> dict[str, float]:
    """Each consumer heard from in the last day, with its last heartbeat (Unix time)."""
    since = utcnow() - timedelta(days=1)
    with app_context():
        return {
            consumer.id: consumer.heartbeat_at.replace(tzinfo=UTC).timestamp()
            for consumer in db.session.scalars(Consumer.seen_since(since))
        }


def seconds_since_last_heartbeat() -> float | None:
    """How long ago the most recent consumer heartbeat was; None if there never was one."""
    beats = consumer_heartbeats()
    return time.time() - max(beats.values()) if beats else None


# --- the Flask app inside the consumer ------------------------------------------------

_app: Flask | None = None
_app_lock = threading.Lock()


def flask_app() -> Flask:
    """The current app (immediate mode, tests), or the consumer's own, created once."""
    global _app
    if has_app_context():
        # current_app is a proxy, typed as the app it stands for: hand out the app itself.
        return cast("LocalProxy[Flask]", current_app)._get_current_object()
    with _app_lock:
        if _app is None:
            module, factory = APP_FACTORY.split(":")
            _app = getattr(importlib.import_module(module), factory)()
            _log_once()
    return _app


def _log_once() -> None:
    # huey_consumer gave the "huey" logger its own handler; the app added one to the root
    # logger: print each line once.
    if logging.getLogger("huey").handlers:
        logging.getLogger("huey").propagate = False


def adopt_app(app: Flask) -> None:
    """In a consumer forked from a process that made the app already (supervise.py): run
    the tasks in `app`, shared with that process, instead of making one; and take an id of
    this process's own (the one made at import names the parent, and every consumer forked
    from it)."""
    global _app, CONSUMER_ID
    CONSUMER_ID = new_consumer_id()
    with _app_lock:
        _app = app
    _log_once()


@contextmanager
def app_context() -> Iterator[None]:
    """A fresh app context (and so a fresh database session) for one task or signal."""
    with flask_app().app_context():
        yield


@huey.on_startup()
def create_app_early() -> None:
    # Build the app when a worker starts, not when the first task arrives.
    flask_app()


# What tasks.py tells the machinery about the tasks (see the module's docstring).
TRACKED_TASKS: dict[str, Any] = {}
CONSUMER_START_WORK: list[Callable[[], object]] = []
TASK_OVER_HANDLERS: list[Callable[[str], None]] = []


def on_consumer_start(work: Callable[[], object]) -> Callable[[], object]:
    """Run `work` (which queues something) each time a consumer starts."""
    CONSUMER_START_WORK.append(work)
    return work


def on_task_over(handler: Callable[[str], None]) -> Callable[[str], None]:
    """Call `handler(task_id)` when a task will not run again, to remove what it left."""
    TASK_OVER_HANDLERS.append(handler)
    return handler


def task_over(task_id: str) -> None:
    for handler in TASK_OVER_HANDLERS:
        handler(task_id)


def tracked(fn: TaskWrapper) -> TaskWrapper:
    """Mark a task whose Huey id is also the id of a Task row."""
    TRACKED_TASKS[fn.name] = fn
    return fn


class TaskAbandoned(Exception):
    """The row stopped being `running` under the task (reaped or deleted)."""


class Progress:
    """Writes a task's progress: when the percentage moves (rate-limited) or for a heartbeat."""

    def __init__(self, task_id: str, total: int, percent: int = 0):
        self.task_id = task_id
        self.total = max(total, 1)
        self.percent = percent
        self.last_write = time.monotonic()
        # A running task writes its heartbeat at least this often, even when the bar does
        # not move: well within the time after which it would count as stale.
        self.heartbeat = min(5.0, current_app.config["MICROBLOG_TASK_STALE_SECONDS"] / 4)

    def update(
        self,
        done: int,
        message: str | None = None,
        force: bool = False,
        checkpoint: Callable[[], dict] | None = None,
    ) -> None:
        """Record `done` items when it is time to; `checkpoint` is then called for where a
        resumed run would continue (it is recorded in the same write)."""
        if stopping.is_set():
            raise ConsumerStopping()
        percent = min(100, done * 100 // self.total)
        since = time.monotonic() - self.last_write
        moved = percent > self.percent and since >= PROGRESS_MIN_INTERVAL
        if force or moved or since >= self.heartbeat:
            self.write(percent, message, checkpoint() if checkpoint else None)

    def write(
        self, percent: int, message: str | None = None, checkpoint: dict | None = None
    ) -> None:
        self.percent = max(self.percent, percent)
        self.last_write = time.monotonic()
        if Task.record_progress(self.task_id, self.percent, message, checkpoint):
            return
        row = db.session.get(Task, self.task_id)
        if row is not None and row.cancel_requested:
            raise CancelExecution(retry=False)
        raise TaskAbandoned(f"task {self.task_id} is no longer running")
