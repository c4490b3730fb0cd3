"""Two instances of ours, each a gunicorn and a huey_consumer on its own loopback address,
federating over real HTTP: alice@A finds bob@B by WebFinger, follows him (B accepts), bob
posts, and the post reaches alice's home timeline on A; bob's deletion takes it away."""

import re
import urllib.parse

import pytest

from database import db
from microblog import create_app
from tests.helpers import add_user
from tests.live import Browser, LiveSite, wait_for

FENCE_OPEN = {"FEDERATION_ALLOW_HTTP": "true", "FEDERATION_ALLOW_PRIVATE": "true"}


def make_site(directory, host, username, password_hash):
    """A data dir with one user, then its web server on `host` and a consumer."""
    directory.mkdir()
    app = create_app(
        {"DATA_DIR": str(directory), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{directory / 'app.db'}"}
    )
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    add_user(app, username, password_hash)
    site = LiveSite(directory, **FENCE_OPEN)
    try:
        site.start_web(host=host, site_url=True)
        site.start_consumer()
    except BaseException:
        site.stop()
        raise
    return site


@pytest.fixture
def two_sites(tmp_path, password_hash):
    sites = []
    try:
        sites.append(make_site(tmp_path / "a", "127.0.0.2", "alice", password_hash))
        sites.append(make_site(tmp_path / "b", "127.0.0.3", "bob", password_hash))
        yield sites
    finally:
        for site in sites:
            site.stop()


def logs(*sites):
    return "\n".join(
        f"--- {site.url}\n{(site.data_dir / 'web.log').read_text(errors='replace')[-3000:]}"
        f"\n{site.consumer_log()[-3000:]}"
        for site in sites
    )


def test_follow_and_read_across_two_instances(two_sites):
    from tests.conftest import PASSWORD

    a, b = two_sites
    b_host = urllib.parse.urlsplit(b.url).netloc
    bob_here = f"bob@{b_host}"
    alice = Browser(a.url)
    alice.login("alice", PASSWORD)

    # Search finds bob on B by WebFinger and shows his profile here.
    status, page, _ = alice.get("/search?" + urllib.parse.urlencode({"q": f"@{bob_here}"}))
    assert status == 200, logs(a, b)
    assert f'<h1 class="h3">{bob_here}</h1>' in page.decode(), page.decode()[:2000]

    profile = f"/user/{bob_here}"
    status, _ = alice.submit(f"/follow/{bob_here}", token_from=profile)
    assert status == 200
    # B accepts: alice is among bob's followers there, and follows him here.
    wait_for(
        lambda: (
            b.query("SELECT username FROM user JOIN followers ON follower_id = user.id")
            == [(f"alice@{urllib.parse.urlsplit(a.url).netloc}",)]
        ),
        timeout=30,
        what="alice to follow bob on B",
    )
    wait_for(
        lambda: b'follow-state">Following<' in alice.get(profile)[1],
        timeout=30,
        what="B's Accept to reach A",
    )

    bob = Browser(b.url)
    bob.login("bob", PASSWORD)
    status, _ = bob.submit("/index", {"post": "Hello from B, fediverse!"}, token_from="/index")
    assert status == 200

    def in_alices_timeline():
        return b"Hello from B, fediverse!" in alice.get("/index")[1]

    try:
        wait_for(in_alices_timeline, timeout=30, what="bob's post on alice's home timeline")
    except AssertionError:
        raise AssertionError(logs(a, b)) from None

    # bob deletes it: it leaves alice's timeline.
    (post_id,) = b.query("SELECT id FROM post")[0]
    _, home = bob.get("/index")[:2]
    token = re.search(rb'name="csrf_token" value="([^"]+)"', home)[1].decode()
    status, _ = bob.submit(f"/post/{post_id}/delete", {"csrf_token": token})
    assert status == 200
    wait_for(lambda: not in_alices_timeline(), timeout=30, what="the Delete to reach A")
