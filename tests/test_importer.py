"""Reading archives to import (importer.py) and adding their posts (User.import_posts)."""

import json
import random
import tracemalloc
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archive_reading
import importer
import importing
from database import db
from follows import Follows
from importer import ArchiveError, Limits, html_to_text, open_archive
from importing import add_imported_posts
from models import POST_MAX, Post, User
from tests.helpers import (
    ACTOR,
    AS_PUBLIC,
    TINY_ENTRY,
    boost,
    follow,
    outbox_zip,
    toot,
    with_end_record,
    with_extra_entries,
    write_export_file,
    write_outbox,
)

V1_POSTS = [
    {"body": "first post", "timestamp": "2024-05-01T12:00:00Z"},
    {"body": 'ünïcode "quoted" </script> 😀', "timestamp": "2024-05-02T08:30:15Z"},
]


def read(path, limits=importer.DEFAULT_LIMITS):
    """(archive, posts) after one full pass."""
    archive = open_archive(path, limits)
    return archive, list(archive.posts())


def zip_of(path, members: dict, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


# --- our export ---------------------------------------------------------------------------


def test_reads_the_tutorial_format(tmp_path):
    path = tmp_path / "posts.json"
    write_export_file(path, V1_POSTS)
    archive, posts = read(path)
    assert archive.format == importer.MICROBLOG
    assert [(p.body, p.timestamp) for p in posts] == [
        ("first post", datetime(2024, 5, 1, 12, 0, 0)),
        ('ünïcode "quoted" </script> 😀', datetime(2024, 5, 2, 8, 30, 15)),
    ]
    assert all(p.timestamp.tzinfo is None and p.source_id is None for p in posts)
    assert archive.following == [] and archive.profile == {} and archive.skipped.total == 0
    assert archive.progress == 1.0


def test_reads_the_richer_format_and_ignores_unknown_fields(tmp_path):
    path = tmp_path / "posts.json"
    posts = [
        {**post, "id": i + 7, "language": "en", "extra": {"a": [1]}}
        for i, post in enumerate(V1_POSTS)
    ]
    write_export_file(
        path,
        posts,
        version=2,
        profile={"username": "alice", "about_me": "hi", "avatar": "alice.webp", "x": [1]},
        exported_at="2024-06-01T00:00:00Z",
    )
    # `following` after the posts, where a streaming writer puts it.
    text = path.read_text().rstrip().removesuffix("}")
    path.write_text(
        text
        + ', "following": ["bob", "carol", "not a username!", "'
        + "x" * 65
        + '"], "future": {"deep": [[{}]]}}'
    )
    archive, imported = read(path)
    assert archive.version == 2
    assert archive.profile == {"username": "alice", "about_me": "hi", "avatar": "alice.webp"}
    assert archive.following == ["bob", "carol"]
    assert [p.source_id for p in imported] == ["7", "8"]
    assert [p.body for p in imported] == [p["body"] for p in V1_POSTS]


def test_same_posts_get_the_same_keys_in_either_format(tmp_path):
    old, new = tmp_path / "v1.json", tmp_path / "v2.json"
    write_export_file(old, V1_POSTS)
    write_export_file(
        new,
        [{**p, "id": 1, "timestamp": p["timestamp"].replace("Z", "+00:00")} for p in V1_POSTS],
        version=2,
        following=[],
    )
    keys = [[p.key for p in read(path)[1]] for path in (old, new)]
    assert keys[0] == keys[1]
    assert len(set(keys[0])) == 2 and all(len(k) == 64 for k in keys[0])


def test_timestamps_become_naive_utc(tmp_path):
    path = tmp_path / "posts.json"
    stamps = ["2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00", "2024-05-01T07:00:00.250-05:00"]
    write_export_file(path, [{"body": f"p{i}", "timestamp": t} for i, t in enumerate(stamps)])
    _archive, posts = read(path)
    assert [p.timestamp for p in posts] == [
        datetime(2024, 5, 1, 12),
        datetime(2024, 5, 1, 12),
        datetime(2024, 5, 1, 12, 0, 0, 250000),
    ]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1)),
        ("0001-01-01T01:00:00+01:00", datetime(1, 1, 1)),
        # In UTC these are before year 1 or after 9999: no datetime can hold them.
        ("0001-01-01T00:00:00+01:00", None),
        ("0001-01-01T00:00:00+23:59", None),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59)),
        ("9999-12-31T23:00:00-01:00", None),
        ("9999-12-31T23:59:59.999999-23:59", None),
        ("10000-01-01T00:00:00Z", None),
        ("+10000-01-01", None),
        ("0000-01-01T00:00:00Z", None),
        ("2024-13-01T00:00:00Z", None),
        ("2024-05-01T12:00:00+24:00", None),
        ("yesterday", None),
        ("9" * 5000, None),
        # ISO 8601 allows any number of digits after the second; the rest is cut off.
        ("2024-05-01T12:00:00." + "9" * 5000 + "Z", datetime(2024, 5, 1, 12, 0, 0, 999999)),
        ("2024-05-01\ud800", None),
        ("\udc00", None),
        ("", None),
        ("Z", None),
        (None, None),
        (20240501, None),
        (1.5e300, None),
        (True, None),
        (["2024-05-01T12:00:00Z"], None),
        ({"time": "2024-05-01T12:00:00Z"}, None),
    ],
)
def test_parse_timestamp_gives_naive_utc_or_none(value, expected):
    assert importer.parse_timestamp(value) == expected


def test_posts_dated_before_1970_or_in_the_future_are_skipped_and_counted(tmp_path):
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    soon, later = now + timedelta(hours=1), now + timedelta(hours=46)
    stamps = {
        "1969-12-31T23:59:59Z": False,
        "1970-01-01T00:00:00Z": True,
        "1970-01-01T00:30:00+01:00": False,  # 23:30 UTC the day before
        "0001-01-01T00:00:00Z": False,
        f"{soon.isoformat()}Z": True,  # a server whose clock is ahead
        f"{later.isoformat()}Z": False,
        f"{later.isoformat()}+23:00": True,  # in UTC, 23 hours from now
        f"{later.isoformat()}+01:00": False,
        "9999-12-31T23:59:59Z": False,
    }
    path = tmp_path / "posts.json"
    write_export_file(path, [{"body": stamp, "timestamp": stamp} for stamp in stamps])
    archive, posts = read(path)
    assert [p.body for p in posts] == [stamp for stamp, kept in stamps.items() if kept]
    assert archive.skipped.misdated == 6 and archive.skipped.total == 6
    assert archive.skipped.describe() == "Skipped 6 posts dated before 1970 or in the future."

    outbox = tmp_path / "outbox.json"
    write_outbox(
        outbox,
        [toot(n, f"<p>{stamp}</p>", published=stamp) for n, stamp in enumerate(stamps)]
        + [toot(99, "<p>private and misdated</p>", published="9999-01-01T00:00:00Z", to=[])],
    )
    archive, posts = read(outbox)
    assert [p.body for p in posts] == [stamp for stamp, kept in stamps.items() if kept]
    assert (archive.skipped.misdated, archive.skipped.private) == (6, 1)


def test_line_breaks_count_as_the_site_counts_them_and_are_kept_as_lf(tmp_path):
    path = tmp_path / "posts.json"
    fits = "a\r\n" * (POST_MAX // 2)  # POST_MAX characters once each CRLF is one
    too_long = fits + "b"
    write_export_file(
        path, [{"body": b, "timestamp": "2024-05-01T12:00:00Z"} for b in (fits, too_long)]
    )
    archive, posts = read(path)
    assert [p.body for p in posts] == ["a\n" * (POST_MAX // 2 - 1) + "a"]  # stripped, as ever
    assert archive.skipped.too_long == 1


def test_long_and_empty_posts_are_skipped_and_counted_never_cut(tmp_path):
    path = tmp_path / "posts.json"
    bodies = ["x" * POST_MAX, "y" * (POST_MAX + 1), "   ", "", "  kept  ", "nul\x00here"]
    write_export_file(path, [{"body": b, "timestamp": "2024-05-01T12:00:00Z"} for b in bodies])
    archive, posts = read(path)
    assert [p.body for p in posts] == ["x" * POST_MAX, "kept", "nulhere"]
    assert (archive.skipped.too_long, archive.skipped.empty) == (1, 2)
    assert archive.skipped.describe() == (
        f"Skipped 1 post longer than {POST_MAX} characters (posts are never cut). "
        "Skipped 2 empty posts."
    )


def test_each_pass_counts_afresh(tmp_path):
    path = tmp_path / "posts.json"
    write_export_file(path, [{"body": "z" * 500, "timestamp": "2024-05-01T12:00:00Z"}] + V1_POSTS)
    archive = open_archive(path)
    assert archive.check() == 2
    assert len(list(archive.posts())) == 2
    assert archive.skipped.too_long == 1


# --- Mastodon -------------------------------------------------------------------------------

HTML = (
    '<p>Hello &amp; welcome, <span class="h-card"><a href="https://elsewhere.example/@bob" '
    'class="u-url mention">@<span>bob</span></a></span> '
    '<a href="https://mastodon.example/tags/intro" class="mention hashtag" rel="tag">#<span>'
    "intro</span></a></p><p>Read "
    '<a href="https://example.com/a/long/path?q=1" rel="nofollow noopener" target="_blank">'
    '<span class="invisible">https://</span><span class="ellipsis">example.com/a/long</span>'
    '<span class="invisible">/path?q=1</span></a><br />or <a href="https://example.org/">'
    "this page</a> &lt;3</p>"
)


def mastodon_items():
    own = f"{ACTOR}/statuses/1"
    return [
        toot(1, HTML, published="2019-04-07T10:13:54+02:00"),
        boost(2),
        toot(
            3, "<p>@bob I agree</p>", in_reply_to="https://elsewhere.example/users/bob/statuses/9"
        ),
        toot(4, "<p>and one more thing (1/2)</p>", in_reply_to=own),
        toot(5, "<p>(2/2)</p>", in_reply_to=f"{ACTOR}/statuses/4"),
        toot(6, "<p>only for followers</p>", to=[f"{ACTOR}/followers"], cc=[]),
        toot(7, "<p>a direct message</p>", to=["https://elsewhere.example/users/bob"], cc=[]),
        toot(8, "<p>unlisted</p>", to=[f"{ACTOR}/followers"], cc=[AS_PUBLIC]),
        toot(9, "<p>" + "long " * 40 + "</p>"),
        toot(10, ""),  # a picture without words
        toot(11, "<p>spoiler</p>", summary="film ending"),
        {"type": "Like", "id": "x", "object": "y"},
        {**toot(12, "<p>poll</p>"), "object": {**toot(12, "")["object"], "type": "Question"}},
    ]


EXPECTED_TOOTS = [
    (
        "Hello & welcome, @bob #intro\n\nRead https://example.com/a/long/path?q=1\n"
        "or this page (https://example.org/) <3",
        datetime(2019, 4, 7, 8, 13, 54),
    ),
    ("and one more thing (1/2)", datetime(2019, 4, 7, 10, 13, 54)),
    ("(2/2)", datetime(2019, 4, 7, 10, 13, 54)),
    ("unlisted", datetime(2019, 4, 7, 10, 13, 54)),
    ("CW: film ending\n\nspoiler", datetime(2019, 4, 7, 10, 13, 54)),
]


def check_mastodon(archive, posts):
    assert archive.format == importer.MASTODON
    assert [(p.body, p.timestamp) for p in posts] == EXPECTED_TOOTS
    assert [p.source_id for p in posts] == [f"{ACTOR}/statuses/{n}" for n in (1, 4, 5, 8, 11)]
    skipped = archive.skipped
    assert (skipped.boosts, skipped.replies, skipped.private) == (1, 1, 2)
    assert (skipped.too_long, skipped.empty, skipped.unsupported) == (1, 1, 2)
    assert skipped.describe() == (
        "Skipped 1 boost. Skipped 1 reply to someone else. Skipped 2 non-public posts. "
        f"Skipped 1 post longer than {POST_MAX} characters (posts are never cut). "
        "Skipped 1 empty post. Skipped 2 other items."
    )


def test_reads_a_mastodon_outbox_alone(tmp_path):
    path = tmp_path / "outbox.json"
    write_outbox(path, mastodon_items())
    check_mastodon(*read(path))


def test_reads_a_mastodon_archive(tmp_path):
    outbox = tmp_path / "outbox.json"
    write_outbox(outbox, mastodon_items())
    path = zip_of(
        tmp_path / "archive.zip",
        {
            "actor.json": json.dumps({"type": "Person", "preferredUsername": "alice"}),
            "likes.json": "{}",
            "media_attachments/files/1/original/a.png": b"\x89PNG",
            "outbox.json": outbox.read_bytes(),
        },
    )
    archive, posts = read(path)
    check_mastodon(archive, posts)
    assert archive.progress == 1.0
    # The toot's id decides its key, not its text: an edited toot is still the same one.
    edited = tmp_path / "edited.json"
    write_outbox(edited, [toot(1, "<p>edited</p>", published="2019-04-07T08:13:54Z")])
    assert read(edited)[1][0].key == posts[0].key


@pytest.mark.parametrize(
    "html, text",
    [
        ("<p>a</p><p>b</p>", "a\n\nb"),
        ("line<br>break<br/>again", "line\nbreak\nagain"),
        ("&lt;b&gt; &amp;amp; &#128512; &eacute;", "<b> &amp; 😀 é"),
        ('<a href="https://x.example/">x.example</a>', "x.example"),
        ('<a href="https://x.example/page">see</a>', "see (https://x.example/page)"),
        ('<a href="javascript:alert(1)">click</a>', "click"),
        ("<script>not run</script>plain", "not runplain"),
        ("<p>unclosed <b>tags", "unclosed tags"),
    ],
)
def test_html_becomes_plain_text(html, text):
    assert html_to_text(html) == text


# --- bad files ------------------------------------------------------------------------------

POST = b'{"body": "b", "timestamp": "2024-05-01T12:00:00Z"}'


def posts_json(*items: bytes) -> bytes:
    return b'{"posts": [' + b", ".join(items) + b"]}"


BAD_JSON = {
    "empty": (b"", "The file is empty."),
    "blank": (b" \n\t ", "The file is empty."),
    "text": (b"hello, world", "neither a JSON file nor a zip archive"),
    "binary": (bytes(random.Random(1).randrange(256) for _ in range(5000)), "neither a JSON"),
    "gzip": (b"\x1f\x8b\x08\x00" + bytes(100), "neither a JSON file nor a zip archive"),
    "list": (b"[1, 2, 3]", "neither a Microblog export"),
    "other object": (b'{"name": "x", "items": []}', "neither a Microblog export"),
    "posts not a list": (b'{"posts": {"body": "b"}}', '"posts" is not a list'),
    "post not an object": (posts_json(POST, b"42"), "Post 2 of this file is not an object"),
    "post without body": (posts_json(b'{"timestamp": "2024-05-01T12:00:00Z"}'), "no text"),
    "body not text": (posts_json(b'{"body": 7, "timestamp": "2024-05-01T12:00:00Z"}'), "no text"),
    "bad timestamp": (posts_json(b'{"body": "b", "timestamp": "yesterday"}'), '"timestamp"'),
    # Before year 1 in UTC: datetime overflows converting it.
    "timestamp out of range": (
        posts_json(POST, b'{"body": "b", "timestamp": "0001-01-01T00:00:00+01:00"}'),
        'Post 2 of this file has no valid "timestamp"',
    ),
    # html.parser raises AssertionError on a marked section it does not know.
    "toot html unreadable": (
        b'{"orderedItems": [' + json.dumps(toot(1, "<p>a</p><![2b")).encode() + b"]}",
        "Item 1 of outbox.json could not be read",
    ),
    "cut short": (posts_json(POST, POST)[:-5], "not valid JSON"),
    "trailing garbage": (posts_json(POST) + b" and more", "not valid JSON"),
    "invalid utf-8": (posts_json(b'{"body": "\xff\xfe", "timestamp": "2024"}'), "not valid JSON"),
    "NaN": (b'{"posts": [], "version": NaN}', "not valid JSON"),
    "lone high surrogate": (posts_json(POST.replace(b'"b"', b'"a\\ud800b"')), "lone surrogate"),
    "lone low surrogate": (posts_json(POST.replace(b'"b"', b'"a\\udc00"')), "lone surrogate"),
    "surrogate in UTF-8": (posts_json(POST.replace(b'"b"', b'"\xed\xa0\x80"')), "lone surrogate"),
    "surrogate at the end": (posts_json(POST.replace(b'"b"', b'"\\ud83d"')), "lone surrogate"),
    "deeply nested": (b'{"posts": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "nested too"),
    "nested in a post": (posts_json(b'{"body": ' + b"[" * 70 + b"]" * 70 + b"}"), "nested too"),
    "following not names": (b'{"following": [1], "posts": []}', "list of usernames"),
    "outbox item not an object": (b'{"orderedItems": ["x"]}', "Item 1 of outbox.json"),
}


@pytest.mark.parametrize("data, message", BAD_JSON.values(), ids=BAD_JSON.keys())
def test_bad_json_files_get_a_clear_error(tmp_path, data, message):
    path = tmp_path / "upload"
    path.write_bytes(data)
    with pytest.raises(ArchiveError, match=message):
        read(path)


def test_surrogate_pairs_and_escaped_backslashes_are_fine(tmp_path):
    path = tmp_path / "posts.json"
    stamp = '"timestamp": "2024-05-01T12:00:00Z"'
    path.write_text(
        f'{{"posts": [{{"body": "\\ud83d\\ude00", {stamp}}}, '
        f'{{"body": "\\\\ud800 \\\\udc00", {stamp}}}]}}'
    )
    _archive, posts = read(path)
    assert [p.body for p in posts] == ["😀", "\\ud800 \\udc00"]


def test_a_pair_cut_in_two_by_the_reads_is_fine(tmp_path):
    path = tmp_path / "posts.json"
    head = '{"posts": [{"timestamp": "2024-05-01T12:00:00Z", "padding": "'
    filler = "f" * (archive_reading.READ_SIZE - len(head) - len('", "body": "\\ud83d'))
    path.write_text(head + filler + '", "body": "\\ud83d\\ude00"}]}')
    assert path.read_bytes()[: archive_reading.READ_SIZE].endswith(b"\\ud83d")
    _archive, posts = read(path)
    assert [p.body for p in posts] == ["😀"]


def test_bad_zip_files_get_a_clear_error(tmp_path):
    outbox = tmp_path / "outbox.json"
    write_outbox(outbox, [toot(n, f"<p>toot {n}</p>") for n in range(200)])
    good = zip_of(tmp_path / "good.zip", {"outbox.json": outbox.read_bytes()})
    data = good.read_bytes()
    cases = {
        "cut short": (data[: len(data) // 2], "damaged or incomplete"),
        "no directory": (data[:-22], "damaged or incomplete"),
        "damaged data": (data[:100] + bytes(200) + data[300:], "damaged or incomplete"),
        "empty zip": (zip_of(tmp_path / "e.zip", {}).read_bytes(), "no outbox.json"),
        "other files": (
            zip_of(tmp_path / "o.zip", {"posts.json": "{}", "a.png": b"x"}).read_bytes(),
            "no outbox.json",
        ),
        "outbox of another kind": (
            zip_of(tmp_path / "k.zip", {"outbox.json": b'{"type": "Person"}'}).read_bytes(),
            "not a Mastodon outbox",
        ),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.zip"
        path.write_bytes(content)
        with pytest.raises(ArchiveError, match=message):
            read(path)


def test_zip_limits(tmp_path):
    outbox = tmp_path / "outbox.json"
    write_outbox(outbox, [toot(n, f"<p>toot {n}</p>") for n in range(50)])
    many = zip_of(
        tmp_path / "many.zip",
        {f"media/{n}.png": b"x" for n in range(30)} | {"outbox.json": outbox.read_bytes()},
    )
    with pytest.raises(ArchiveError, match="holds 31 files, more than the 30 allowed"):
        read(many, Limits(zip_members=30))
    assert len(read(many, Limits(zip_members=31))[1]) == 50

    # A kilobyte that unpacks to 100 MiB of spaces inside valid JSON.
    bomb = zip_of(
        tmp_path / "bomb.zip", {"outbox.json": b'{"orderedItems": []' + b" " * 100 * 2**20 + b"}"}
    )
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ArchiveError, match="zip bomb"):
        read(bomb)
    with pytest.raises(
        ArchiveError, match="outbox.json in this zip is too big: the limit is 50 MiB"
    ):
        read(bomb, Limits(json_bytes=50 * 2**20))
    with pytest.raises(ArchiveError, match="This file is too big"):
        read(many, Limits(upload_bytes=1000))

    encrypted = bytearray(
        zip_of(tmp_path / "enc.zip", {"outbox.json": outbox.read_bytes()}).read_bytes()
    )
    # Set the "encrypted" flag in the local header and in the central directory.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = encrypted.find(signature)
        encrypted[at + offset] |= 1
    (tmp_path / "enc.zip").write_bytes(bytes(encrypted))
    with pytest.raises(ArchiveError, match="password-protected"):
        read(tmp_path / "enc.zip")


def test_a_zip_that_lies_about_its_sizes_is_stopped_while_reading(tmp_path):
    # The directory says outbox.json is small; the data unpacks to far more.
    real = b'{"orderedItems": [' + b" " * 5_000_000 + b"]}"
    path = zip_of(tmp_path / "lying.zip", {"outbox.json": real})
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + offset : at + offset + 4] = (1000).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        read(path)


def test_a_zip_whose_directory_holds_more_than_its_end_record_says_is_refused(tmp_path):
    # zipfile builds an object for every entry of the directory, whatever the end record
    # counts: two million tiny ones (94 MB) took 1.5 GB. The count is checked, not trusted.
    data = outbox_zip([toot(1, "<p>hello</p>")])
    path = tmp_path / "many.zip"
    path.write_bytes(with_extra_entries(data, 30, claimed=1))
    with pytest.raises(ArchiveError, match="damaged or incomplete"):
        read(path, Limits(zip_members=30))
    # The same zip, honest about its 31 files, is refused for holding too many...
    path.write_bytes(with_extra_entries(data, 30))
    with pytest.raises(ArchiveError, match="holds 31 files, more than the 30 allowed"):
        read(path, Limits(zip_members=30))
    # ...and read when they are allowed.
    assert len(read(path, Limits(zip_members=31))[1]) == 1


def test_a_zip_directory_over_the_byte_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big directory.zip"
    path.write_bytes(with_extra_entries(outbox_zip([toot(1, "<p>hello</p>")]), 25_000))
    assert 25_000 * len(TINY_ENTRY) > 2**20
    with pytest.raises(ArchiveError, match="list of files takes more than the 1 MiB allowed"):
        read(path, Limits(zip_directory_bytes=2**20))
    assert len(read(path, Limits(zip_directory_bytes=2 * 2**20))[1]) == 1


def end_record_lies(data: bytes) -> dict[str, bytes]:
    """The zip `data` with an end record that lies about its central directory."""
    record = archive_reading._EOCD
    size, offset = record.unpack_from(data, len(data) - record.size)[5:7]
    return {
        # zipfile finds the directory from its size alone, and reads this one.
        "data before the zip": b"PK\x03\x04" + bytes(1000) + data,
        "offset past the end": with_end_record(data, offset=len(data) + 100),
        "offset too small": with_end_record(data, offset=offset - 1),
        "size beyond the file": with_end_record(data, size=2**32 - 1),
        "size too large": with_end_record(data, size=size + 1, offset=offset - 1),
        "size too small": with_end_record(data, size=size - 1, offset=offset + 1),
        "no entries": with_end_record(data, size=0, offset=offset + size),
    }


@pytest.mark.parametrize("lie", end_record_lies(outbox_zip([toot(1, "<p>a</p>")])))
def test_a_zip_whose_end_record_lies_about_its_directory_is_refused(tmp_path, lie):
    path = tmp_path / "lying.zip"
    path.write_bytes(end_record_lies(outbox_zip([toot(1, "<p>a</p>")]))[lie])
    with pytest.raises(ArchiveError, match="damaged or incomplete"):
        read(path)


def test_plain_json_size_limit(tmp_path):
    path = tmp_path / "posts.json"
    write_export_file(path, V1_POSTS * 100)
    with pytest.raises(ArchiveError, match="This file is too big: the limit is 0 MiB"):
        read(path, Limits(json_bytes=1000))
    with pytest.raises(ArchiveError, match="far too large"):
        read(path, Limits(item_events=3))


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_damage_to_a_file_ends_in_archive_error_or_a_clean_read(tmp_path, data):
    outbox = tmp_path / "outbox.json"
    write_outbox(outbox, mastodon_items()[:4])
    kind = data.draw(st.sampled_from(["json", "outbox", "zip"]))
    if kind == "json":
        original = json.dumps({"version": 2, "posts": V1_POSTS, "following": ["bob"]}).encode()
    elif kind == "outbox":
        original = outbox.read_bytes()
    else:
        original = zip_of(tmp_path / "a.zip", {"outbox.json": outbox.read_bytes()}).read_bytes()
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(damaged) - 1))
        action = data.draw(st.sampled_from(["set", "cut", "insert"]))
        if action == "set":
            damaged[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del damaged[at : at + data.draw(st.integers(1, 50))]
        else:
            damaged[at:at] = data.draw(st.binary(min_size=1, max_size=20))
        if not damaged:
            damaged = bytearray(b"x")
    path = tmp_path / "upload"
    path.write_bytes(bytes(damaged))
    try:
        _archive, posts = read(path)
    except ArchiveError as error:
        assert str(error)
        return
    for post in posts:
        assert 0 < len(post.body) <= POST_MAX and post.timestamp.tzinfo is None
        post.body.encode("utf-8")  # storable text


# --- memory -------------------------------------------------------------------------------


def test_memory_stays_flat_for_a_big_file(tmp_path):
    path = tmp_path / "posts.json"
    count = 100_000
    write_export_file(
        path,
        (
            {"body": f"post number {i} " + "words " * (i % 20), "timestamp": "2024-05-01T12:00:00Z"}
            for i in range(count)
        ),
    )
    assert path.stat().st_size > 8 * 2**20
    tracemalloc.start()
    try:
        seen = sum(1 for _post in open_archive(path).posts())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 5 * 2**20, f"peak {peak / 2**20:.1f} MiB"


# --- into the database ------------------------------------------------------------------


def import_file(app, user_id, path, batch_size=2) -> int:
    with app.app_context():
        user = db.session.get_one(User, user_id)
        added = sum(
            add_imported_posts(user, batch)
            for batch in importing.batches(open_archive(path).posts(), batch_size)
        )
        db.session.commit()
        return added


def stored_posts(app, user_id):
    with app.app_context():
        query = sa.select(Post.body, Post.timestamp).where(Post.user_id == user_id)
        return sorted(db.session.execute(query).all())


def test_importing_the_same_archive_twice_adds_nothing(app, users, tmp_path):
    path = tmp_path / "posts.json"
    write_export_file(path, V1_POSTS + [{"body": "third", "timestamp": "2024-05-03T00:00:00Z"}])
    assert import_file(app, users["alice"], path) == 3
    assert import_file(app, users["alice"], path) == 0
    assert import_file(app, users["alice"], path, batch_size=100) == 0
    assert stored_posts(app, users["alice"]) == [
        ("first post", datetime(2024, 5, 1, 12)),
        ("third", datetime(2024, 5, 3)),
        ('ünïcode "quoted" </script> 😀', datetime(2024, 5, 2, 8, 30, 15)),
    ]
    # Another account imports the same file: its own copy.
    assert import_file(app, users["bob"], path) == 3
    # A repeated post inside one batch is added once.
    twice = tmp_path / "twice.json"
    write_export_file(
        twice,
        [
            V1_POSTS[0],
            {"body": "new", "timestamp": "2024-01-01T00:00:00Z"},
            {"body": "new", "timestamp": "2024-01-01T00:00:00Z"},
        ],
    )
    assert import_file(app, users["alice"], twice, batch_size=10) == 1


def test_imported_posts_are_found_by_search(app, users, tmp_path):
    path = tmp_path / "outbox.json"
    write_outbox(path, [toot(1, "<p>zebrafish are great</p>")])
    assert import_file(app, users["carol"], path) == 1
    with app.app_context():
        hits = db.session.execute(
            sa.text("SELECT rowid FROM post_fts WHERE post_fts MATCH 'zebrafish'")
        ).all()
    assert len(hits) == 1


def test_follow_usernames_follows_those_that_exist(app, users, make_user):
    follow(app, users["alice"], users["bob"])
    with app.app_context():
        alice = db.session.get_one(User, users["alice"])
        added = Follows(alice).follow_usernames(["bob", "carol", "alice", "nobody"])
        db.session.commit()
        assert added == 1
        assert {u.username for u in db.session.scalars(alice.following.select())} == {
            "bob",
            "carol",
        }


def test_following_keeps_at_most_the_limit(tmp_path):
    path = tmp_path / "posts.json"
    write_export_file(path, V1_POSTS, version=2, following=["bob", "carol", "dave"])
    archive, _posts = read(path, Limits(following=2))
    assert archive.following == ["bob", "carol"]
