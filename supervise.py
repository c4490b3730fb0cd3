"""The one process `./run.sh` starts: it makes the app once, then forks the web server
(gunicorn's arbiter, run in-process) and the Huey consumer from it, and starts either again
when it dies.

Why one parent: memory. Started as two programs, the consumer imported the whole app for
itself (about 105 MiB), beside gunicorn's master, whose workers share its preloaded copy.
Forked from a parent that has imported and made the app, the consumer shares those pages
too, copy-on-write, like gunicorn's workers; `gc.freeze()` before the forks keeps the
collector from writing to every object and so copying the pages into each child.

Nothing the app opens may cross a fork: this parent opens no database connection, no queue
storage and no socket (gunicorn binds its own in the web server; the queue's connection and
the consumer's doorbell are made on first use, in the consumer). A child dead young is
started again later and later (as run.sh did: HEALTHY_AFTER, RESTART_MIN_DELAY doubling to
RESTART_MAX_DELAY), forked again from the same preloaded image. SIGTERM, SIGINT or SIGHUP
stops both: gunicorn with SIGTERM (graceful), the consumer with one SIGINT (graceful; a second
would make it abandon its running tasks), and the parent waits for them. Each child runs in
a session of its own, so a Ctrl-C in the terminal reaches only this parent, and is named
(`gunicorn`, `huey_consumer`) as the programs it replaces were, for `ps` and the tests.

Usage: python supervise.py [--bind 127.0.0.1:5000] [--workers 2] [--threads 4]
[--access-logfile -] [--consumer-workers 2]. `gunicorn 'microblog:create_app()'` and
`huey_consumer tasks.huey` still work on their own (deploy/*.service start them so).
gunicorn's SIGUSR2 (a new master beside the old one) has no place here: restart instead.
"""

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import Application
from huey.consumer_options import ConsumerConfig, OptionParserHandler

import tasks  # every task registered, as in huey_consumer
import worker
from microblog import create_app

PROJECT_DIR = Path(__file__).resolve().parent

# A child that ran at least this long before dying is started again after RESTART_MIN_DELAY;
# one that keeps dying sooner waits twice as long each time, up to RESTART_MAX_DELAY.
HEALTHY_AFTER, RESTART_MIN_DELAY, RESTART_MAX_DELAY = 30, 1, 30
# What stops both children: SIGTERM, SIGINT, and SIGHUP (a closed terminal), which would
# otherwise end this parent alone and leave them running without it.
STOPS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
# Blocked in the parent, which takes them from sigtimedwait() when it is ready for them.
WATCHED = STOPS | {signal.SIGCHLD}
# The consumer's options, as `huey_consumer` took them from run.sh: thread workers with
# fast polling (a task starts within ~10 ms of being queued).
CONSUMER_FLAGS = ["-k", "thread", "-d", "0.01", "-m", "0.5", "-b", "1.1"]


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervise: {message}", file=sys.stderr, flush=True)


def set_process_name(name: str) -> None:
    """What `ps` and /proc/<pid>/comm show (15 characters at most, Linux only)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])


# --- the children -------------------------------------------------------------------------


class WebServer(Application):
    """gunicorn, as `gunicorn microblog:create_app()` runs it (gunicorn.conf.py's settings,
    then the options given), serving the app made in the parent instead of importing it."""

    def __init__(self, app: Flask, options: dict[str, Any]):
        self.app, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        self.load_config_from_file(str(PROJECT_DIR / "gunicorn.conf.py"))
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self.app


def serve_web(app: Flask, options: dict[str, Any]) -> None:
    set_process_name("gunicorn")
    WebServer(app, options).run()  # returns never: gunicorn ends with sys.exit


def consume(app: Flask, workers: int) -> None:
    """`huey_consumer tasks.huey -w <workers> <CONSUMER_FLAGS>`, on the app made already."""
    set_process_name("huey_consumer")
    arguments = ["tasks.huey", "-w", str(workers), *CONSUMER_FLAGS]
    options, _ = OptionParserHandler().get_option_parser().parse_args(arguments[1:])
    config = ConsumerConfig(**{k: v for k, v in vars(options).items() if v is not None})
    config.validate()
    config.setup_logger(logging.getLogger("huey"))
    worker.adopt_app(app)
    # A SIGHUP makes Huey's consumer exec itself again (to load new code): as huey_consumer.
    sys.argv = [str(Path(sys.executable).parent / "huey_consumer"), *arguments]
    tasks.huey.create_consumer(**config.values).run()


@dataclass
class Child:
    name: str  # in the log: `web` or `worker`, as run.sh named them
    run: Callable[[], None]  # what the forked process runs
    stop_signal: signal.Signals
    pid: int = 0  # 0 while not running
    started: float = 0.0
    delay: float = RESTART_MIN_DELAY
    due: float = 0.0  # when to start it (while not running)


# --- the parent -------------------------------------------------------------------------


def start(child: Child) -> Callable[[], None] | None:
    """Fork `child`: in the parent, None; in the child, what it is to run."""
    pid = os.fork()
    if pid == 0:
        os.setsid()  # a Ctrl-C in the terminal is for the parent only
        # A stop sent before here waited, blocked; from now on it acts (at once: the child
        # has nothing to finish yet) until the child sets its own handlers.
        for stop in STOPS:
            signal.signal(stop, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED)
        return child.run
    child.pid, child.started = pid, time.monotonic()
    log(f"{child.name} started (pid {pid})")
    return None


def ended(child: Child, status: int) -> None:
    """`child` exited: start it again after its delay, which grows while it dies young."""
    code = os.waitstatus_to_exitcode(status)
    shown = 128 - code if code < 0 else code  # a signal's death, as a shell shows it
    lived = time.monotonic() - child.started
    if lived >= HEALTHY_AFTER:
        child.delay = RESTART_MIN_DELAY
    log(
        f"{child.name} (pid {child.pid}) exited with status {shown} after {lived:.0f} s; "
        f"starting it again in {child.delay:g} s"
    )
    child.pid, child.due = 0, time.monotonic() + child.delay
    child.delay = min(child.delay * 2, RESTART_MAX_DELAY)


def reap(children: list[Child]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for child in children:
            if child.pid == pid:
                ended(child, status)


def supervise(children: list[Child]) -> Callable[[], None] | None:
    """Run `children`, restarting them, until one of STOPS; then stop them and return
    None. In a child forked meanwhile, it returns what that child is to run."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
    while True:
        now = time.monotonic()
        for child in children:
            if child.pid == 0 and child.due <= now and (run := start(child)):
                return run
        waiting = [child.due - now for child in children if child.pid == 0]
        received = signal.sigtimedwait(WATCHED, max(0.0, min(waiting, default=60.0)))
        reap(children)
        if received is not None and received.si_signo in STOPS:
            break
    log("stopping")
    for child in children:
        if child.pid:
            os.kill(child.pid, child.stop_signal)
    for child in children:
        if child.pid:
            os.waitpid(child.pid, 0)  # further stops stay blocked: each child had its one
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:5000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--access-logfile")
    parser.add_argument("--consumer-workers", type=int, default=2)
    args = parser.parse_args(argv)
    web_options = {"bind": [args.bind], "workers": args.workers, "threads": args.threads}
    if args.access_logfile:
        web_options["accesslog"] = args.access_logfile

    app = create_app()
    gc.freeze()  # what is made so far stays out of the collector's passes: shared
    children = [
        Child("web", partial(serve_web, app, web_options), signal.SIGTERM),
        Child("worker", partial(consume, app, args.consumer_workers), signal.SIGINT),
    ]
    run = supervise(children)
    if run is not None:  # a child: it runs its part, then ends as that program would
        run()


if __name__ == "__main__":
    main()
