#!/usr/bin/env python
"""Benchmark importing archives on SQLite, through the site: gunicorn and a real consumer.

Targets: 1,000,000 posts of our export, and a 100,000-item Mastodon outbox, each imported
in under 20 s from the start of the upload to the task being `done`, with the consumer's
peak RSS (VmHWM) under 150 MiB. Each import runs on a fresh site (a fresh consumer, so its
VmHWM is this import's), is then checked (every post there and found by the search index),
and is imported a second time, which must add nothing.

`--round-trip` instead exports a user's posts, imports the file into a second account and
exports that one: the two files must hold the same posts (body and timestamp, in order).

Run with `./run.sh bench` or `python tests/bench_import.py [--posts 1000000] [--toots 100000]`,
or `python tests/bench_import.py --round-trip [--posts 1000000]`.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ijson  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from database import db
from microblog import create_app  # noqa: E402
from tests.helpers import (  # noqa: E402
    AWKWARD_BODY,
    add_posts,
    add_user,
    boost,
    toot,
    write_export_file,
    write_outbox,
)
from tests.live import Browser, LiveSite  # noqa: E402

TARGET_SECONDS = 20.0
TARGET_RSS_MIB = 150
PASSWORD = "bench password"
WORDS = "with some words to make it realistic"


# --- the archives ----------------------------------------------------------------------


def write_ours(path: Path, count: int) -> None:
    """Our export (format version 2) of `count` posts, 97 s apart."""
    start = datetime(2015, 1, 1)

    def posts():
        for i in range(count):
            moment = start + timedelta(seconds=97 * i)
            yield {
                "id": i + 1,
                "body": f"Post number {i}, {WORDS}.",
                "timestamp": moment.isoformat() + "Z",
            }

    write_export_file(path, posts(), version=2, profile={"username": "bench"}, following=[])


def write_mastodon(path: Path, count: int) -> None:
    """A Mastodon archive: outbox.json with `count` items (Create/Note toots, one in ten
    an Announce) and a few media files beside it."""
    start = datetime(2017, 4, 1)

    def items():
        for i in range(count):
            if i % 10 == 9:
                yield boost(i)
                continue
            moment = (start + timedelta(seconds=613 * i)).isoformat() + "Z"
            content = (
                f'<p>Toot {i} &amp; a <a href="https://example.com/{i}" rel="nofollow">'
                f'<span class="invisible">https://</span>example.com/{i}</a><br>{WORDS}</p>'
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


# --- a site ------------------------------------------------------------------------------


def new_site(data_dir: Path, *usernames: str) -> tuple[LiveSite, dict]:
    """gunicorn and one consumer on a fresh SQLite database holding these users."""
    data_dir.mkdir()
    os.environ.pop("DATABASE_URL", None)  # the targets are for SQLite
    app = create_app({"DATA_DIR": str(data_dir)})
    with app.app_context():
        db.create_all()
    password_hash = generate_password_hash(PASSWORD)
    users = {name: add_user(app, name, password_hash) for name in usernames}
    with app.app_context():
        db.engine.dispose()
    site = LiveSite(data_dir)
    site.start_web()
    site.start_consumer()
    return site, users


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (the machine may be busy with others)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_task(site: LiveSite, send) -> tuple[float, dict]:
    """Start a task with `send()` (a request); seconds from the start of the request to
    the row being `done`, and the row."""
    before = {row[0] for row in site.query("SELECT id FROM task")}
    start = time.perf_counter()
    status, body = send()
    assert status == 200, (status, body[:300])
    (task_id,) = {row[0] for row in site.query("SELECT id FROM task")} - before
    row = site.wait_for_status(task_id, "done", "failed", "cancelled", timeout=900)
    elapsed = time.perf_counter() - start
    assert row["status"] == "done", row
    return elapsed, row


def import_file(site: LiveSite, username: str, path: Path, filename: str) -> tuple[float, dict]:
    browser = Browser(site.url)
    browser.login(username, PASSWORD)
    return run_task(site, lambda: browser.upload("/import", filename, path))


def export_to(site: LiveSite, username: str, target: Path) -> float:
    """Export `username`'s posts through the site into `target`; seconds until done."""
    browser = Browser(site.url)
    browser.login(username, PASSWORD)
    token = browser.csrf_token("/index")
    elapsed, row = run_task(site, lambda: browser.submit("/export_posts", {"csrf_token": token}))
    with browser.opener.open(f"{site.url}/exports/{row['id']}", timeout=300) as response:
        with target.open("wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    return elapsed


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# --- the import benchmark -------------------------------------------------------------------


def bench(label: str, path: Path, data_dir: Path, filename: str) -> None:
    size = path.stat().st_size / 2**20
    site, users = new_site(data_dir, "bench")
    try:
        (consumer,) = site.consumers
        idle_rss, idle_cpu = peak_rss_mib(consumer.pid), cpu_seconds(consumer.pid)
        seconds, row = import_file(site, "bench", path, filename)
        rss, cpu = peak_rss_mib(consumer.pid), cpu_seconds(consumer.pid) - idle_cpu
        queued_to_done = datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(
            row["created_at"]
        )
        ((posts,),) = site.query("SELECT count(*) FROM post WHERE user_id = ?", (users["bench"],))
        ((found,),) = site.query("SELECT count(*) FROM post_fts WHERE post_fts MATCH 'realistic'")
        print(
            f"{label} ({size:,.1f} MiB): upload to done {seconds:.2f} s "
            f"(target < {TARGET_SECONDS:.0f} s: {verdict(seconds < TARGET_SECONDS)}; "
            f"stored to done {queued_to_done.total_seconds():.2f} s, worker CPU {cpu:.2f} s); "
            f"worker VmHWM {rss:.1f} MiB (target < {TARGET_RSS_MIB}: "
            f"{verdict(rss < TARGET_RSS_MIB)}; {idle_rss:.1f} MiB before the import)\n"
            f"  {row['text']} {posts:,} posts stored, {found:,} found by search.",
            flush=True,
        )
        assert found == posts, (found, posts)
        seconds, row = import_file(site, "bench", path, filename)
        print(f"  importing it again: {row['text']} in {seconds:.2f} s", flush=True)
        assert row["text"].startswith("Imported 0 posts."), row
    finally:
        site.stop()


def round_trip(count: int, tmp: Path) -> None:
    """Export alice's `count` posts, import them into bob, export bob; compare the files."""
    data_dir = tmp / "round-trip"
    site, users = new_site(data_dir, "alice", "bob")
    try:
        app = create_app({"DATA_DIR": str(data_dir)})
        started = time.perf_counter()
        add_posts(app, users["alice"], count, body=AWKWARD_BODY + f" {WORDS}")
        print(f"gave alice {count:,} posts in {time.perf_counter() - started:.1f} s", flush=True)
        first, second = tmp / "alice.json", tmp / "bob.json"
        exported = export_to(site, "alice", first)
        imported, row = import_file(site, "bob", first, "posts.json")
        exported_again = export_to(site, "bob", second)
        print(
            f"round trip of {count:,} posts: export {exported:.2f} s, import {imported:.2f} s "
            f"({row['text']}), export again {exported_again:.2f} s "
            f"(worker VmHWM {peak_rss_mib(site.consumers[0].pid):.1f} MiB)",
            flush=True,
        )
        compared = compare_posts(first, second)
        print(
            f"  {compared:,} posts compared: the same body and timestamp, in the same order, "
            "in both exports",
            flush=True,
        )
        assert compared == count, (compared, count)
    finally:
        site.stop()


def compare_posts(first: Path, second: Path) -> int:
    """How many posts both exports hold, after checking each pair (body and timestamp)."""
    count = 0
    with first.open("rb") as a, second.open("rb") as b:
        posts_a = ijson.items(a, "posts.item")
        posts_b = ijson.items(b, "posts.item")
        for count, (one, other) in enumerate(zip(posts_a, posts_b, strict=True), start=1):
            pair = (one["body"], one["timestamp"]), (other["body"], other["timestamp"])
            assert pair[0] == pair[1], f"post {count} differs: {pair}"
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--toots", type=int, default=100_000)
    parser.add_argument(
        "--round-trip", action="store_true", help="export, import, export again, compare"
    )
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="bench-import-") as name:
        tmp = Path(name)
        if args.round_trip:
            round_trip(args.posts, tmp)
        else:
            for label, count, writer, filename in (
                (f"our export, {args.posts:,} posts", args.posts, write_ours, "posts.json"),
                (f"Mastodon archive, {args.toots:,} items", args.toots, write_mastodon, "a.zip"),
            ):
                if not count:
                    continue
                path = tmp / filename
                started = time.perf_counter()
                writer(path, count)
                print(f"wrote {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
                bench(label, path, tmp / filename.split(".")[0], filename)
                path.unlink()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
