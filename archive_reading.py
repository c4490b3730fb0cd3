"""Reading an uploaded archive's bytes without trusting them: the limits a file must keep
to, a stream that enforces them as it reads, the checks a zip's directory must pass before
zipfile reads it, and a JSON value builder bounded in size and depth. importer.py turns
what comes out into posts."""

import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import config
from i18n import Phrase, PhrasedError, phrase

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class Limits:
    """What an uploaded archive may be. The defaults fit a 1,000,000-post export (~120 MiB),
    a 100,000-toot outbox (~200 MiB) and a Mastodon archive with its media files."""

    # The uploaded file itself (a Mastodon archive also holds every media attachment): the
    # declared default of MICROBLOG_IMPORT_MAX_BYTES, which the import task passes.
    upload_bytes: int = config.default("MICROBLOG_IMPORT_MAX_BYTES")
    # The JSON we parse: the plain file, or outbox.json once unpacked.
    json_bytes: int = 1 * GiB
    # Files in a zip: its whole directory is read into memory before anything else.
    zip_members: int = 50_000
    # Bytes of that directory, read whole before its entries are counted. An entry of a
    # Mastodon archive takes about 150 (46, a media file's name of some 80 characters and
    # an extra field): twice what 50,000 of them take.
    zip_directory_bytes: int = 16 * MiB
    # Unpacked size / packed size of outbox.json. JSON packs 5-30×; a zip bomb 1000×.
    zip_ratio: int = 200
    # Objects and arrays inside one another. A toot nests about 5 deep.
    depth: int = 64
    # Parser events in one post or activity (keys, values, brackets). A toot has ~100.
    item_events: int = 100_000
    # Usernames kept from `following`.
    following: int = 10_000


DEFAULT_LIMITS = Limits()

READ_SIZE = 64 * 1024


class ArchiveError(PhrasedError):
    """The uploaded file cannot be imported; its phrases say why."""


# --- reading bytes safely ------------------------------------------------------------------

BROKEN_ZIP = phrase("This zip archive is damaged or incomplete; download it again and retry.")
# What zipfile raises for a damaged archive: bad records, bad data, sizes or CRCs that do
# not match, a compression method or version it does not know, encryption it cannot read.
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


# A \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, or a low one without a high one
# before it, each preceded by an even number of backslashes (an odd one escapes the first).
# The C parser would quietly turn them into "?"; they are not text, so the file is refused.
_LONE_SURROGATE = re.compile(
    rb"(?:^|[^\\])(?:\\\\)*"
    rb"(?:\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)
# Bytes kept from one chunk for the next, so that no escape (nor the one after it, which
# decides whether it is a pair) is cut in two.
_SURROGATE_CARRY = 32
_SURROGATE_CONTEXT = 6  # a match needs this much after it to be sure it is alone
NOT_UNICODE = phrase("This file contains text that is not valid Unicode (a lone surrogate).")


class GuardedReader:
    """A binary stream that enforces the size limit while reading, refuses lone surrogate
    escapes, drops a UTF-8 byte order mark and turns read errors into `ArchiveError`."""

    def __init__(self, raw: IO[bytes], limit: int, too_big: Phrase, damaged: Phrase):
        self.raw, self.limit, self.too_big, self.damaged = raw, limit, too_big, damaged
        self.bytes_read = 0
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self.raw.read(READ_SIZE if size is None or size < 0 else size)
        except ZIP_ERRORS as exc:
            raise ArchiveError(self.damaged) from exc
        if self.bytes_read == 0 and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        self.bytes_read += len(chunk)
        if self.bytes_read > self.limit:
            raise ArchiveError(self.too_big)
        window = self._tail + chunk
        if b"\\u" in window:
            self._refuse_lone_surrogates(window, at_end=not chunk)
        self._tail = window[-_SURROGATE_CARRY:]
        return chunk

    @staticmethod
    def _refuse_lone_surrogates(window: bytes, at_end: bool) -> None:
        for match in _LONE_SURROGATE.finditer(window):
            if at_end or match.end() + _SURROGATE_CONTEXT <= len(window):
                raise ArchiveError(NOT_UNICODE)


# --- zip archives ------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # a central directory entry, before its name


class _ZipEnd(NamedTuple):
    """What a zip's end record (or its ZIP64 one) says of its central directory."""

    entries: int
    size: int
    offset: int
    # Where the directory must end: at the (ZIP64) end record.
    end: int


def _zip_end(f: IO[bytes], size: int) -> _ZipEnd:
    """Read the end record as zipfile does: at the very end of the file, else the last one
    in the 64 KiB a comment may take; the ZIP64 record just before it when there is one."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail_size - _EOCD.size
    if at < 0 or not (tail.startswith(b"PK\x05\x06", at) and tail.endswith(b"\0\0")):
        at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise ArchiveError(BROKEN_ZIP)
    _sig, disk, first_disk, _here, entries, cd_size, offset, _comment = _EOCD.unpack_from(tail, at)
    end = size - tail_size + at
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail.startswith(b"PK\x06\x07", locator):
        record_at = _ZIP64_LOCATOR.unpack_from(tail, locator)[2]
        end -= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
        if record_at != end or end < 0:  # zipfile reads it there, whatever the locator says
            raise ArchiveError(BROKEN_ZIP)
        f.seek(end)
        record = f.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or not record.startswith(b"PK\x06\x06"):
            raise ArchiveError(BROKEN_ZIP)
        disk, first_disk, _here, entries, cd_size, offset = _ZIP64_EOCD.unpack(record)[4:]
    if disk or first_disk:  # split over several files: never a downloaded archive
        raise ArchiveError(BROKEN_ZIP)
    return _ZipEnd(entries, cd_size, offset, end)


def _directory_entries(directory: bytes, most: int) -> int:
    """How many entries `directory` holds, walked as zipfile walks it (each a fixed-size
    header, then its name, extra field and comment); stops counting past `most`."""
    count = at = 0
    while at < len(directory) and count <= most:
        if not directory.startswith(b"PK\x01\x02", at) or at + _CENTRAL.size > len(directory):
            raise ArchiveError(BROKEN_ZIP)
        name, extra, comment = _CENTRAL.unpack_from(directory, at)[12:15]
        at += _CENTRAL.size + name + extra + comment
        count += 1
    if count <= most and at != len(directory):  # the last entry runs past the directory
        raise ArchiveError(BROKEN_ZIP)
    return count


def _too_many_members(members: int, limits: Limits) -> ArchiveError:
    return ArchiveError(
        phrase(
            "This zip holds %(members)s files, more than the %(limit)s allowed. "
            "Unpack it and upload its outbox.json alone.",
            members=members,
            limit=limits.zip_members,
        )
    )


def _check_zip_directory(f: IO[bytes], size: int, limits: Limits) -> None:
    """Refuse a zip whose central directory is too large or not where and what its end
    record says, before `ZipFile` reads all of it and makes an object of each entry.

    zipfile trusts the end record: it reads as many bytes as it gives for the directory
    (found from its end, whatever the offset says), then every entry in them, however many
    the record counts. Both the size and the count are attacker-written, so the size is
    bounded and the entries are counted here, without building anything.
    """
    end = _zip_end(f, size)
    if end.entries > limits.zip_members:
        raise _too_many_members(end.entries, limits)
    if end.offset + end.size != end.end:
        raise ArchiveError(BROKEN_ZIP)
    if end.size > limits.zip_directory_bytes:
        raise ArchiveError(
            phrase(
                "This zip's list of files takes more than the %(mib)s MiB allowed. "
                "Unpack it and upload its outbox.json alone.",
                mib=round(limits.zip_directory_bytes / MiB, 1),
            )
        )
    f.seek(end.offset)
    if _directory_entries(f.read(end.size), end.entries) != end.entries:
        raise ArchiveError(BROKEN_ZIP)


def find_outbox(path: Path, size: int, limits: Limits) -> zipfile.ZipInfo:
    """The outbox.json entry of a Mastodon archive, checked against the limits."""
    with path.open("rb") as f:
        _check_zip_directory(f, size, limits)
        try:
            with zipfile.ZipFile(f) as archive:
                infos = archive.infolist()
        except ZIP_ERRORS as exc:
            raise ArchiveError(BROKEN_ZIP) from exc
    if len(infos) > limits.zip_members:  # never, unless zipfile walks it otherwise
        raise _too_many_members(len(infos), limits)
    outboxes = [i for i in infos if i.filename.rsplit("/", 1)[-1] == "outbox.json"]
    if not outboxes:
        raise ArchiveError(
            phrase(
                "This zip has no outbox.json: upload the archive Mastodon made for you "
                "(Preferences → Import and export → Request your archive) or your posts.json."
            )
        )
    info = min(outboxes, key=lambda i: i.filename.count("/"))
    if info.flag_bits & 0x1:
        raise ArchiveError(phrase("This zip is password-protected; upload an unencrypted archive."))
    if info.file_size > limits.json_bytes:
        raise ArchiveError(too_big(True, limits.json_bytes))
    if info.file_size > limits.zip_ratio * max(info.compress_size, 1):
        raise ArchiveError(
            phrase("This zip unpacks to far more than it holds (a zip bomb?); it was not opened.")
        )
    return info


EMPTY = phrase("The file is empty.")
UNREADABLE = phrase("The uploaded file could not be read.")


def not_json(in_zip: bool, near_byte: int) -> Phrase:
    if in_zip:
        return phrase(
            "outbox.json in this zip is not valid JSON (it is damaged or cut short near byte "
            "%(byte)s).",
            byte=near_byte,
        )
    return phrase(
        "This file is not valid JSON (it is damaged or cut short near byte %(byte)s).",
        byte=near_byte,
    )


def too_big(in_zip: bool, limit: int) -> Phrase:
    mib = round(limit / MiB, 1)
    if in_zip:
        return phrase("outbox.json in this zip is too big: the limit is %(mib)s MiB.", mib=mib)
    return phrase("This file is too big: the limit is %(mib)s MiB.", mib=mib)


# --- JSON events -------------------------------------------------------------------------

_OPEN = {"start_map", "start_array"}
_CLOSE = {"end_map", "end_array"}
Events = Iterator[tuple[str, Any]]
TOO_DEEP = phrase("This file is nested too deeply to be an export or an outbox.")


def build_value(event: str, value: Any, events: Events, max_events: int, max_depth: int) -> Any:
    """The value that starts with (event, value): a scalar, or a whole object or array of at
    most `max_events` parser events nested at most `max_depth` deep (a few kilobytes of
    brackets would otherwise build millions of nested lists).

    This loop runs for every post of the file: it is written for speed.
    """
    if event not in _OPEN:
        return value
    root: Any = {} if event == "start_map" else []
    stack, top, key, count = [root], root, None, 0
    for event, value in events:
        count += 1
        if count > max_events:
            raise ArchiveError(phrase("One item of this file is far too large to be a post."))
        if event == "map_key":
            key = value
            continue
        if event == "end_map" or event == "end_array":
            stack.pop()
            if not stack:
                return root
            top = stack[-1]
            continue
        if event == "start_map" or event == "start_array":
            item: Any = {} if event == "start_map" else []
            if len(stack) >= max_depth:
                raise ArchiveError(TOO_DEEP)
        else:
            item = value
        if type(top) is dict:
            top[key] = item
        else:
            top.append(item)
        if item is not value:
            stack.append(item)
            top = item
    raise ArchiveError(phrase("This file ends in the middle of an item."))  # the parser stops first


def skip_value(event: str, events: Events, max_depth: int) -> None:
    """Read past the value that starts with `event` without keeping it."""
    if event not in _OPEN:
        return
    depth = 1
    for event, _value in events:
        if event in _OPEN:
            depth += 1
            if depth > max_depth:
                raise ArchiveError(TOO_DEEP)
        elif event in _CLOSE:
            depth -= 1
            if depth == 0:
                return
