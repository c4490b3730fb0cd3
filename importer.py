"""Reading an uploaded archive as a stream of posts: our own export, or a Mastodon archive.

Accepted files:

- our export, `{"posts": [{"body": ..., "timestamp": "2024-05-01T12:00:00Z"}, ...]}`, with or
  without the fields beside it (`version`, `profile`, post `id`s, `following`); fields we do not
  know are ignored;
- a Mastodon archive (`.zip`) holding `outbox.json`, or that `outbox.json` alone: an
  ActivityStreams `OrderedCollection` whose `orderedItems` are `Create` activities of `Note`
  objects (the toots) and `Announce` activities (boosts).

The file is parsed as a stream of events (ijson) and each post is built, checked and handed
on before the next is read, so memory stays flat however large the file is (`spool` keeps
the checked posts in a scratch file for a second pass). Every way a file can be bad ends in
`ArchiveError` with a sentence for the user; nothing else escapes.

A post is imported unchanged or not at all: boosts, replies to other people, posts that were
not public, empty posts, posts over the site's length limit and posts dated before 1970 or
in the future are skipped and counted (`Skipped`), never cut. Each post carries a stable
`key` so that importing the same archive twice adds nothing (`importing.add_imported_posts`
skips keys it already has).
"""

import hashlib
import logging
import os
import re
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple

import ijson

from archive_reading import (
    BROKEN_ZIP,
    DEFAULT_LIMITS,
    EMPTY,
    NOT_UNICODE,
    READ_SIZE,
    UNREADABLE,
    ZIP_ERRORS,
    ArchiveError,
    Events,
    GuardedReader,
    Limits,
    build_value,
    find_outbox,
    not_json,
    skip_value,
    too_big,
)
from database import utcnow
from i18n import Phrase, nphrase, phrase
from models import POST_MAX, USERNAME_MAX, USERNAME_PATTERN, plain_text, text_length

MICROBLOG = "microblog"
MASTODON = "mastodon"

AS_PUBLIC = {"https://www.w3.org/ns/activitystreams#Public", "as:Public", "Public"}
USERNAME = re.compile(USERNAME_PATTERN)

# The dates a post may have. Unix time, which the software that wrote any post counts in,
# starts in 1970: an earlier date is a broken value (year 1 is what some write for "none").
# No later than that: posts from before the fediverse are real (a blog's, converted to our
# format). Only the future end matters for the pages, which show the newest first.
EARLIEST = datetime(1970, 1, 1)
# After now: the exporting server's clock may be ahead of ours, or a time in its local
# zone (up to UTC+14) written as UTC. A post dated later would sit first on /explore and
# every follower's home page until that date.
AHEAD = timedelta(days=1)

log = logging.getLogger(__name__)


class ImportedPost(NamedTuple):
    """One post to add: plain text, naive UTC time, where it came from, its dedup key."""

    body: str
    timestamp: datetime
    # The Mastodon object id, or our export's post id (None in the tutorial's format).
    source_id: str | None
    # 64 characters, the same every time the same post is read (see `post_key`).
    key: str


def post_key(body: str, timestamp: datetime, source_id: str | None = None) -> str:
    """A post's dedup key: its UTC time (14 digits) then 50 hex digits of a SHA-256.

    A Mastodon toot is known by its object id (stable when edited); one of ours by time and
    text, so that the same posts from an old-format and a new-format export, or from two
    exports of the same account, are recognised. The time comes first so that an archive,
    written oldest first, adds to the end of the unique index instead of all over it (a
    random key made each insert of a large import several times slower).
    """
    if source_id is not None:
        return _key(f"{timestamp:%Y%m%d%H%M%S}", f"activitypub\n{source_id}")
    return _key(f"{timestamp:%Y%m%d%H%M%S}", f"{timestamp.isoformat()}\n{body}")


def _key(time_digits: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return time_digits + digest[:50]


@dataclass
class Skipped:
    """Items of an archive that were not imported, by reason."""

    boosts: int = 0
    replies: int = 0  # replies to someone else's post
    private: int = 0  # followers-only and direct toots: never made public by an import
    too_long: int = 0  # over POST_MAX characters; never cut
    empty: int = 0  # nothing left after HTML to text (a picture-only toot)
    misdated: int = 0  # before EARLIEST or more than AHEAD after now
    unsupported: int = 0  # other activities and objects (polls' votes, likes, articles)

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def phrases(self) -> list[Phrase]:
        """One sentence per reason something was skipped ("Skipped 2 boosts.")."""
        sentences = [
            nphrase("Skipped %(num)s boost.", "Skipped %(num)s boosts.", self.boosts),
            nphrase(
                "Skipped %(num)s reply to someone else.",
                "Skipped %(num)s replies to others.",
                self.replies,
            ),
            nphrase(
                "Skipped %(num)s non-public post.",
                "Skipped %(num)s non-public posts.",
                self.private,
            ),
            nphrase(
                "Skipped %(num)s post longer than %(limit)s characters (posts are never cut).",
                "Skipped %(num)s posts longer than %(limit)s characters (posts are never cut).",
                self.too_long,
                limit=POST_MAX,
            ),
            nphrase("Skipped %(num)s empty post.", "Skipped %(num)s empty posts.", self.empty),
            nphrase(  # the year is EARLIEST's
                "Skipped %(num)s post dated before 1970 or in the future.",
                "Skipped %(num)s posts dated before 1970 or in the future.",
                self.misdated,
            ),
            nphrase(
                "Skipped %(num)s other item.", "Skipped %(num)s other items.", self.unsupported
            ),
        ]
        return [sentence for sentence in sentences if sentence.values["num"]]

    def describe(self) -> str:
        """The sentences of `phrases`, in English (for logs and benchmarks)."""
        return " ".join(map(str, self.phrases()))


# --- turning items into posts ---------------------------------------------------------------


def parse_timestamp(value: Any) -> datetime | None:
    """Naive UTC for an ISO 8601 time (`Z`, an offset, or none: UTC); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        if value[-1:] == "Z":  # the common case, twice as fast as converting from UTC
            return datetime.fromisoformat(value[:-1])
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # overflow: before year 1 or after 9999 in UTC
        return None
    return moment


def _clean(body: str) -> str:
    # PostgreSQL cannot store NUL characters; nobody typed one. Line breaks as posts have them.
    return plain_text(body if "\x00" not in body else body.replace("\x00", "")).strip()


class _HTMLText(HTMLParser):
    """Mastodon's toot HTML as plain text: paragraphs and line breaks become new lines, a
    link keeps its text (Mastodon writes the whole URL there, partly hidden), and gets its
    address after it when the text is something else."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[tuple[str, int]] = []  # (href, where its text starts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.links:
            href, start = self.links.pop()
            text = "".join(self.parts[start:]).strip()
            if _shows_address(text, href):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def text(self) -> str:
        return "".join(self.parts).strip()


def _shows_address(text: str, href: str) -> bool:
    """Whether a link's address must be written after its text for the reader to have it:
    not for mentions and hashtags, nor when the text is the address (with or without its
    scheme, maybe shortened)."""
    if not href.startswith(("http://", "https://")) or not text or text[0] in "@#":
        return False
    shown = text.split("://", 1)[-1].rstrip("/…")
    return not href.split("://", 1)[1].startswith(shown)


def html_to_text(html: str) -> str:
    """Plain text of a toot's HTML content (entities unescaped, links kept as text)."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()


def _is_public(activity: dict, note: dict) -> bool:
    audience: list[Any] = []
    for holder in (activity, note):
        for name in ("to", "cc"):
            value = holder.get(name)
            audience.extend(value if isinstance(value, list) else [value])
    return any(isinstance(a, str) and a in AS_PUBLIC for a in audience)


def _is_reply_to_other(note: dict, actor: str) -> bool:
    parent = note.get("inReplyTo")
    if not parent:
        return False
    if isinstance(parent, dict):
        parent = parent.get("id")
    # A toot's id is its author's actor id followed by "/statuses/<n>".
    return not (isinstance(parent, str) and actor and parent.startswith(actor.rstrip("/") + "/"))


# --- the archive ---------------------------------------------------------------------------


@dataclass
class _Header:
    """The top-level fields of the file, beside the list of posts."""

    version: Any = None
    profile: dict = field(default_factory=dict)
    following: list[str] = field(default_factory=list)


class _Converter:
    """Turns the items of one pass over an archive into posts, counting what it skips."""

    def __init__(self, file_format: str, file_name: str):
        self.format = file_format
        self.file_name = file_name
        self.skipped = Skipped()
        # Posts dated after this are refused (see AHEAD): fixed for the pass.
        self.latest = utcnow() + AHEAD

    def post(self, item: Any, number: int) -> ImportedPost | None:
        """Item `number` as a post, or None (counted) when it is not imported; an error
        for an item the code failed on says which one."""
        convert = self._microblog_post if self.format == MICROBLOG else self._mastodon_post
        try:
            return convert(item, number)
        except (ArchiveError, MemoryError):
            raise
        except Exception as exc:
            raise self._unreadable(number) from exc

    def _unreadable(self, number: int) -> ArchiveError:
        """The error for an item whose values our code failed on (html.parser's assertions,
        say). Converting an item reads nothing but the item, so reading it again would
        fail again: it is the file's fault, and a retry cannot help."""
        log.warning("Item %s of %s could not be read", number, self.file_name, exc_info=True)
        if self.format == MICROBLOG:
            return ArchiveError(
                phrase("Post %(number)s of this file could not be read.", number=number)
            )
        return ArchiveError(
            phrase("Item %(number)s of outbox.json could not be read.", number=number)
        )

    def _well_dated(self, timestamp: datetime) -> bool:
        """Whether a post's time is one it can have; when not, it is counted."""
        if EARLIEST <= timestamp <= self.latest:
            return True
        self.skipped.misdated += 1
        return False

    def _fitting(self, body: str) -> str | None:
        """The text to store, or None (counted) when it is empty or too long to post."""
        body = _clean(body)
        if not body:
            self.skipped.empty += 1
            return None
        if text_length(body) > POST_MAX:
            self.skipped.too_long += 1
            return None
        return body

    def _microblog_post(self, item: Any, number: int) -> ImportedPost | None:
        """One of our posts; a file we wrote has no excuse, so anything odd is an error."""
        if type(item) is not dict:
            not_an_object = phrase("Post %(number)s of this file is not an object.", number=number)
            raise ArchiveError(not_an_object)
        body, stamp = item.get("body"), item.get("timestamp")
        if type(body) is not str:
            raise ArchiveError(
                phrase('Post %(number)s of this file has no text (its "body").', number=number)
            )
        timestamp = parse_timestamp(stamp)
        if timestamp is None or type(stamp) is not str:
            raise ArchiveError(
                phrase('Post %(number)s of this file has no valid "timestamp".', number=number)
            )
        if not self._well_dated(timestamp):
            return None
        body = self._fitting(body)
        if body is None:
            return None
        post_id = item.get("id")
        source_id = str(post_id) if isinstance(post_id, int | str) else None
        if len(stamp) == 20 and stamp[10] == "T" and stamp[13] == ":":
            # post_key's result from the text of the time ("2024-05-01T12:00:00Z"):
            # formatting a million datetimes twice costs seconds.
            digits = (
                stamp[:4] + stamp[5:7] + stamp[8:10] + stamp[11:13] + stamp[14:16] + stamp[17:19]
            )
            return ImportedPost(body, timestamp, source_id, _key(digits, f"{stamp[:19]}\n{body}"))
        return ImportedPost(body, timestamp, source_id, post_key(body, timestamp))

    def _mastodon_post(self, item: Any, number: int) -> ImportedPost | None:
        if not isinstance(item, dict):
            raise ArchiveError(
                phrase("Item %(number)s of outbox.json is not an object.", number=number)
            )
        kind, note = item.get("type"), item.get("object")
        if kind == "Announce":
            self.skipped.boosts += 1
            return None
        if kind != "Create" or not isinstance(note, dict) or note.get("type") != "Note":
            self.skipped.unsupported += 1
            return None
        actor = item.get("actor") or note.get("attributedTo")
        timestamp = parse_timestamp(note.get("published")) or parse_timestamp(item.get("published"))
        content, source_id = note.get("content"), note.get("id")
        if timestamp is None or not isinstance(content, str) or not isinstance(source_id, str):
            self.skipped.unsupported += 1
            return None
        if _is_reply_to_other(note, actor if isinstance(actor, str) else ""):
            self.skipped.replies += 1
            return None
        if not _is_public(item, note):
            self.skipped.private += 1
            return None
        if not self._well_dated(timestamp):
            return None
        text = html_to_text(content)
        warning = note.get("summary")
        if isinstance(warning, str) and warning.strip() and text:
            text = f"CW: {warning.strip()}\n\n{text}"
        body = self._fitting(text)
        if body is None:
            return None
        return ImportedPost(body, timestamp, source_id, post_key(body, timestamp, source_id))


class Archive:
    """An uploaded file, checked at once for kind, size and shape; read with `posts()`.

    `posts()` reads the file from the start each time it is called. After a complete pass,
    `skipped`, `following` and `profile` describe what that pass read. `ArchiveError` may
    come from any point of a pass (a file cut short is only found at its end): call
    `check()` first when a bad file must import nothing.
    """

    def __init__(self, path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS):
        self.path = Path(path)
        self.limits = limits
        self.skipped = Skipped()
        self._header = _Header()
        self._member: zipfile.ZipInfo | None = None
        self._reader: GuardedReader | None = None
        try:
            self.size = self.path.stat().st_size
        except OSError as exc:
            raise ArchiveError(UNREADABLE) from exc
        self._sniff()
        self.format = self._detect_format()

    # -- public ------------------------------------------------------------------------
    @property
    def following(self) -> list[str]:
        """Usernames the exporting account followed (our export only), valid ones only."""
        return self._header.following

    @property
    def profile(self) -> dict[str, str]:
        """`username`, `about_me`, `avatar` from our export's profile, when given as text."""
        return {k: v for k, v in self._header.profile.items() if isinstance(v, str)}

    @property
    def version(self) -> Any:
        return self._header.version

    @property
    def progress(self) -> float:
        """How far the current pass has read, 0.0 to 1.0 (by bytes of JSON)."""
        if self._reader is None:
            return 0.0
        total = self._member.file_size if self._member else self.size
        return min(1.0, self._reader.bytes_read / max(total, 1))

    def posts(self) -> Iterator[ImportedPost]:
        """Every importable post, in file order; the rest is counted in `skipped`."""
        converter = _Converter(self.format, self.path.name)
        self.skipped = converter.skipped
        self._header = _Header()
        with self._events() as events:
            for number, item in enumerate(self._items(events), start=1):
                post = converter.post(item, number)
                if post is not None:
                    yield post

    def check(self) -> int:
        """Read the whole file without keeping anything; the number of posts to import."""
        return sum(1 for _post in self.posts())

    # -- opening -------------------------------------------------------------------------
    def _sniff(self) -> None:
        """Refuse, by its size and first bytes, a file that cannot be an archive."""
        if self.size == 0:
            raise ArchiveError(EMPTY)
        if self.size > self.limits.upload_bytes:
            raise ArchiveError(too_big(False, self.limits.upload_bytes))
        with self.path.open("rb") as f:
            start = f.read(4096)
        if start.startswith(b"PK\x03\x04") or start.startswith(b"PK\x05\x06"):
            self._member = find_outbox(self.path, self.size, self.limits)
            return
        text = start.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
        if not text and self.size <= len(start):
            raise ArchiveError(EMPTY)
        if self.size > self.limits.json_bytes:
            raise ArchiveError(too_big(False, self.limits.json_bytes))
        if text and text[:1] not in b"{[":
            raise ArchiveError(
                phrase(
                    "This is neither a JSON file nor a zip archive: upload your posts.json, "
                    "a Mastodon archive (.zip) or its outbox.json."
                )
            )

    @contextmanager
    def _events(self) -> Iterator[Events]:
        """The file's JSON events, with every failure turned into `ArchiveError`."""
        with ExitStack() as stack:
            if self._member is not None:
                try:
                    archive = stack.enter_context(zipfile.ZipFile(self.path))
                    raw = stack.enter_context(archive.open(self._member))
                except ZIP_ERRORS as exc:
                    raise ArchiveError(BROKEN_ZIP) from exc
                damaged = BROKEN_ZIP
            else:
                raw = stack.enter_context(self.path.open("rb"))
                damaged = UNREADABLE
            in_zip = self._member is not None
            too_large = too_big(in_zip, self.limits.json_bytes)
            reader = GuardedReader(raw, self.limits.json_bytes, too_large, damaged)
            self._reader = reader
            events = ijson.basic_parse(reader, buf_size=READ_SIZE, use_float=True)
            try:
                yield events
            except UnicodeDecodeError as exc:  # a surrogate written out in UTF-8 bytes
                raise ArchiveError(NOT_UNICODE) from exc
            except ijson.JSONError as exc:
                raise ArchiveError(not_json(in_zip, reader.bytes_read)) from exc

    def _detect_format(self) -> str:
        """Read up to the start of the list of posts to learn which kind of file this is."""
        with self._events() as events:
            for key in self._top_level(events):
                return MICROBLOG if key == "posts" else MASTODON
        raise ArchiveError(self._wrong_shape())

    def _wrong_shape(self) -> Phrase:
        if self._member is not None:
            return phrase(
                "outbox.json in this zip has no orderedItems list: it is not a Mastodon outbox."
            )
        return phrase(
            'This JSON file is neither a Microblog export (with a "posts" list) nor a '
            'Mastodon outbox (with an "orderedItems" list).'
        )

    def _top_level(self, events: Events) -> Iterator[str]:
        """Walk the top-level object; stop at each list of posts (its key is yielded, the
        caller reads its items) and keep the small fields beside it."""
        event, _value = next(events, ("", None))
        if event != "start_map":
            raise ArchiveError(self._wrong_shape())
        depth = self.limits.depth - 1  # what a top-level field's value may hold
        for event, value in events:
            if event == "end_map":
                return
            key = value
            event, value = next(events)
            if key in ("posts", "orderedItems"):
                if event != "start_array":
                    not_a_list = phrase('"%(key)s" is not a list.', key=key)
                    raise ArchiveError(not_a_list, self._wrong_shape())
                yield key
            elif key == "version":
                self._header.version = build_value(event, value, events, 100, depth)
            elif key == "profile" and event == "start_map":
                self._header.profile = build_value(event, value, events, 1000, depth)
            elif key == "following" and event == "start_array":
                self._read_following(events)
            else:
                skip_value(event, events, depth)

    def _items(self, events: Events) -> Iterator[Any]:
        """Each item of the list of posts (built one at a time), then the rest of the file."""
        max_events, depth = self.limits.item_events, self.limits.depth - 2
        expected = "posts" if self.format == MICROBLOG else "orderedItems"
        for key in self._top_level(events):
            if key != expected:
                skip_value("start_array", events, depth)
                continue
            for event, value in events:
                if event == "end_array":
                    break
                yield build_value(event, value, events, max_events, depth)
        for _event in events:  # only whitespace may follow; the parser refuses anything else
            pass

    def _read_following(self, events: Events) -> None:
        for event, value in events:
            if event == "end_array":
                return
            if event != "string":
                raise ArchiveError(phrase('"following" must be a list of usernames.'))
            if len(self._header.following) >= self.limits.following:
                continue  # far more than anyone follows: the rest is not kept
            if len(value) <= USERNAME_MAX and USERNAME.match(value):
                self._header.following.append(value)


def open_archive(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> Archive:
    """Check an uploaded file and learn its kind; `ArchiveError` when it cannot be imported."""
    return Archive(path, limits)
