"""Put this directory on PYTHONPATH to slow every export batch of any `huey_consumer` started
beneath it (by `./run.sh` too) by EXPORT_BATCH_PAUSE seconds: a test can then kill the
consumer mid-export. Python imports `sitecustomize` at start-up; other programs are untouched.
"""

import os
import sys
import time

if os.path.basename(sys.argv[0] if sys.argv else "") == "huey_consumer":
    sys.path.insert(0, os.getcwd())  # huey_consumer runs from the project root
    import exporting

    pause = float(os.environ.get("EXPORT_BATCH_PAUSE", "0.1"))
    exporting.after_export_batch = lambda _done: time.sleep(pause)
