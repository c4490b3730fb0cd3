"""Put this directory on PYTHONPATH to slow every export batch of any `huey_consumer`, or of
the consumer forked by `supervise.py` (as `./run.sh` starts it), started beneath it by
EXPORT_BATCH_PAUSE seconds: a test can then kill the consumer mid-export. Python imports
`sitecustomize` at start-up; other programs are untouched.
"""

import os
import sys
import time

if os.path.basename(sys.argv[0] if sys.argv else "") in ("huey_consumer", "supervise.py"):
    sys.path.insert(0, os.getcwd())  # both run from the project root
    import exporting

    pause = float(os.environ.get("EXPORT_BATCH_PAUSE", "0.1"))
    exporting.after_export_batch = lambda _done: time.sleep(pause)
