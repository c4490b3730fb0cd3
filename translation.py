"""Live translation of posts through a LibreTranslate-compatible server (TRANSLATE_URL).

The site sends the server the text of one post, its detected language and the reader's page
language, and shows what comes back in place of the post. Without TRANSLATE_URL nothing is
offered. The standard library's HTTP client is enough for one small JSON POST.
"""

import json
import logging
import urllib.error
import urllib.request

from flask import current_app
from flask_babel import get_locale
from flask_login import current_user

from i18n import DEFAULT_LANGUAGE

log = logging.getLogger("microblog.translation")

# A translation service that answers with more than this is not answering about one post.
RESPONSE_MAX_BYTES = 64 * 1024


class TranslationError(Exception):
    """The translation service failed (unreachable, an error status, a malformed answer)."""


class TranslationTimeout(TranslationError):
    """The translation service did not answer within TRANSLATE_TIMEOUT."""


def enabled() -> bool:
    return bool(current_app.config["TRANSLATE_URL"])


def reader_language() -> str:
    """The language the page is rendered in ("en", "es"): what a post is translated into."""
    return str(get_locale() or DEFAULT_LANGUAGE)


def same_language(first: str, second: str) -> bool:
    """ "es" and "es-MX" are the same language as far as translating goes."""
    return first.split("-")[0].lower() == second.split("-")[0].lower()


def offered_for(post) -> bool:
    """Whether the page shows a "Translate" link under `post`: a service is set, the reader
    is signed in, and the post is in a known language other than the page's."""
    return offered(post.known_language, offer_target())


def offer_target() -> str | None:
    """The language this page offers translations into: the page's when a service is set
    and the reader is signed in, else None (asked once for a whole page of posts)."""
    if enabled() and current_user.is_authenticated:
        return reader_language()
    return None


def offered(language: str | None, target: str | None) -> bool:
    """Whether a post in `language` (None: unknown) is offered in `target` (offer_target())."""
    return target is not None and language is not None and not same_language(language, target)


def translate(text: str, source: str, target: str) -> str:
    """`text` in `target`, as the service (POST {TRANSLATE_URL}/translate) returns it."""
    config = current_app.config
    payload = {"q": text, "source": source, "target": target, "format": "text"}
    if config["TRANSLATE_API_KEY"]:
        payload["api_key"] = config["TRANSLATE_API_KEY"]
    request = urllib.request.Request(
        config["TRANSLATE_URL"] + "/translate",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=config["TRANSLATE_TIMEOUT"]) as response:
            body = response.read(RESPONSE_MAX_BYTES + 1)
    except TimeoutError as exc:
        raise TranslationTimeout("no answer in time") from exc
    except urllib.error.HTTPError as exc:
        raise TranslationError(f"HTTP {exc.code}: {_error_of(exc)}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise TranslationTimeout("no answer in time") from exc
        raise TranslationError(str(exc.reason)) from exc
    except OSError as exc:
        raise TranslationError(str(exc)) from exc
    return _translated_text(body)


def _error_of(error: urllib.error.HTTPError) -> str:
    """LibreTranslate's `{"error": "..."}`, for the log."""
    try:
        return str(json.loads(error.read(RESPONSE_MAX_BYTES))["error"])[:200]
    except Exception:
        return error.reason or "no reason given"


def _translated_text(body: bytes) -> str:
    if len(body) > RESPONSE_MAX_BYTES:
        raise TranslationError("the answer is too large")
    try:
        text = json.loads(body)["translatedText"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TranslationError("the answer has no translatedText") from exc
    if not isinstance(text, str):
        raise TranslationError("translatedText is not text")
    return text
