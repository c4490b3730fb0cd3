#!/usr/bin/env python
"""Benchmark importing archives on SQLite (targets: 1,000,000 posts of our export < 20 s,
peak RSS < 150 MiB; a 100,000-toot Mastodon archive likewise).

Each import runs in a fresh process, as the worker would run it: open and check the whole
file (a bad file must import nothing), then a second pass adding the posts through
`User.import_posts` in batches, one commit per batch. Reported: the time of each pass, the
total, and the process's peak RSS (VmHWM). A second import of the same file must add nothing.

Run with `./run.sh bench` or `python tests/bench_import.py [--posts 1000000] [--toots 100000]`;
`--without-search` drops the search index's trigger to show how much of the time it takes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SECONDS = 20.0
TARGET_RSS_MIB = 150
BATCH = 5_000


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the archives ----------------------------------------------------------------------


def write_ours(path: Path, count: int) -> None:
    from tests.helpers import write_export_file

    start = datetime(2015, 1, 1)

    def posts():
        for i in range(count):
            moment = start + timedelta(seconds=97 * i)
            yield {
                "id": i + 1,
                "body": f"Post number {i}, with some words to make it realistic.",
                "timestamp": moment.isoformat() + "Z",
            }

    write_export_file(path, posts(), version=2, profile={"username": "bench"}, following=[])


def write_mastodon(path: Path, count: int) -> None:
    """A Mastodon archive: outbox.json with `count` items (one in ten a boost) and a few
    media files beside it."""
    from tests.helpers import boost, toot, write_outbox

    start = datetime(2017, 4, 1)

    def items():
        for i in range(count):
            if i % 10 == 9:
                yield boost(i)
                continue
            moment = (start + timedelta(seconds=613 * i)).isoformat() + "Z"
            content = (
                f'<p>Toot {i} &amp; a <a href="https://example.com/{i}" rel="nofollow">'
                f'<span class="invisible">https://</span>example.com/{i}</a><br>second line</p>'
            )
            yield toot(i, content, published=moment)

    outbox = path.with_name("outbox.json")
    write_outbox(outbox, items())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(outbox, "outbox.json")
        archive.writestr("actor.json", json.dumps({"type": "Person"}))
        for n in range(20):
            archive.writestr(f"media_attachments/files/{n}/original/{n}.png", os.urandom(2000))
    outbox.unlink()


# --- one import, in its own process ---------------------------------------------------------


def run_import(data_dir: str, archive_path: str) -> None:
    """Child process: import `archive_path` for a fresh user; print one JSON line."""
    import importer
    from microblog import create_app
    from models import User, db

    app = create_app({"DATA_DIR": data_dir})
    with app.app_context():
        user = User.by_username("bench")
        if user is None:
            user = User(username="bench", email="bench@example.com")
            db.session.add(user)
            db.session.commit()
        started = time.perf_counter()
        archive = importer.open_archive(archive_path)
        expected = archive.check()
        checked = time.perf_counter()
        added = 0
        for batch in importer.batches(archive.posts(), BATCH):
            added += user.import_posts(batch)
            db.session.commit()
        done = time.perf_counter()
        result = {
            "format": archive.format,
            "posts": expected,
            "added": added,
            "skipped": archive.skipped.describe(),
            "check_s": checked - started,
            "insert_s": done - checked,
            "total_s": done - started,
            "rss_mib": peak_rss_mib(),
        }
    print(json.dumps(result))


def import_in_child(data_dir: Path, path: Path) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(data_dir), str(path)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def bench(label: str, path: Path, data_dir: Path) -> None:
    size = path.stat().st_size / 2**20
    first = import_in_child(data_dir, path)
    again = import_in_child(data_dir, path)
    ok_time = "ok" if first["total_s"] < TARGET_SECONDS else "MISSED"
    ok_rss = "ok" if first["rss_mib"] < TARGET_RSS_MIB else "MISSED"
    print(
        f"{label} ({size:,.1f} MiB): {first['added']:,} posts added in {first['total_s']:.2f} s "
        f"(check pass {first['check_s']:.2f} s + insert pass {first['insert_s']:.2f} s; "
        f"target < {TARGET_SECONDS:.0f} s {ok_time}); peak RSS {first['rss_mib']:.1f} MiB "
        f"(target < {TARGET_RSS_MIB} {ok_rss}). {first['skipped']}",
        flush=True,
    )
    assert first["added"] == first["posts"], first
    assert again["added"] == 0, again
    print(
        f"  importing it again: {again['added']} added in {again['total_s']:.2f} s, "
        f"peak RSS {again['rss_mib']:.1f} MiB",
        flush=True,
    )


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        run_import(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--toots", type=int, default=100_000)
    parser.add_argument(
        "--without-search",
        action="store_true",
        help="drop the search index's insert trigger, to see the import's own cost",
    )
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")

    os.environ.pop("DATABASE_URL", None)  # the targets are for SQLite
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        import sqlalchemy as sa

        from microblog import create_app
        from models import db

        for label, count, writer, name in (
            (f"our export, {args.posts:,} posts", args.posts, write_ours, "posts.json"),
            (f"Mastodon archive, {args.toots:,} items", args.toots, write_mastodon, "a.zip"),
        ):
            if not count:
                continue
            data_dir = Path(tmp) / name.split(".")[0]
            data_dir.mkdir()
            app = create_app({"DATA_DIR": str(data_dir)})
            with app.app_context():
                db.create_all()
                if args.without_search:
                    db.session.execute(sa.text("DROP TRIGGER IF EXISTS post_fts_insert"))
                    db.session.commit()
                db.engine.dispose()
            path = Path(tmp) / name
            started = time.perf_counter()
            writer(path, count)
            print(f"wrote {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
            bench(label, path, data_dir)
            path.unlink()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
