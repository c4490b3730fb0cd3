"""huey_consumer with every export and import batch slowed down, so that a test can stop or
watch one mid-run.

    python -m tests.slow_consumer SECONDS tasks.huey [huey_consumer's options]

Run from the project root (tests/live.py's start_consumer() does). Everything after SECONDS
goes to huey_consumer's own entry point, in this process: flags, signals and shutdown are the
real consumer's.
"""

import sys
import time

from huey.bin.huey_consumer import consumer_main

import exporting
import importing
import tasks  # noqa: F401  (loads every task, as huey_consumer will)

if __name__ == "__main__":
    pause = float(sys.argv.pop(1))
    exporting.after_export_batch = lambda _done: time.sleep(pause)
    importing.after_import_batch = lambda _done: time.sleep(pause)
    sys.exit(consumer_main())
