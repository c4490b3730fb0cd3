"""gunicorn's settings for Microblog, read by every `gunicorn` started from the project root
(deploy/microblog-web.service, the tests) and by supervise.py (what run.sh starts), which
runs gunicorn in a process forked from the one that made the app.

gunicorn runs the worker processes; waitress serves HTTP inside each of them (web_server.py
says why: gunicorn's thread worker lets clients that send a byte a second hold every thread).

The app is made once, in the master, before the workers are forked (`preload_app`): the
workers share its imported code and data copy-on-write instead of each importing its own
copy (about 60 MiB each). Nothing the app opens may cross the fork: the database pool is
emptied in each new worker (the master opens no connection, but a pool copied with one
would hand a child the parent's), and the objects made so far are frozen out of the
garbage collector, whose passes would otherwise write to every one of them and so copy
the shared pages into each worker.
"""

import gc
import signal
import sys
from typing import Any

from database import db

worker_class = "web_server.WaitressWorker"
preload_app = True


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, before each worker is forked."""
    gc.freeze()


# What stops a worker: gunicorn's SIGTERM (graceful), SIGINT and SIGQUIT (at once).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def post_fork(server: Any, worker: Any) -> None:
    """In each new worker: a stop asked before its own signal handlers are set is not lost,
    and its database connections are its own, never the master's."""
    # Until the worker sets its handlers, it has the master's, which only queue a signal for
    # the master's loop: a stop sent to a worker that had just been forked was never seen,
    # and the master waited its whole graceful timeout for it. A preloaded worker is forked
    # and answering in milliseconds, so a stop right after start-up often came then.
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_DFL)  # nothing served yet: end at once
    if any(queued in STOP_SIGNALS for queued in server.SIG_QUEUE):
        sys.exit(0)  # it came even before that
    if not server.cfg.preload_app:
        return  # the worker makes its app itself
    with server.app.wsgi().app_context():
        db.engine.dispose(close=False)
