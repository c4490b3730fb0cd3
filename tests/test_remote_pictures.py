"""Remote accounts' pictures: fetched by the worker through the fence, checked and resized as
an upload, served from here; a real consumer does it as soon as an actor names a picture."""

import io
from datetime import timedelta

import pytest
import sqlalchemy as sa
from PIL import Image

import fedfetch
import remote_pictures
import tasks
from actors import RemoteActor
from avatar_store import avatars_dir
from avatars import AVATAR_SIZES
from database import db
from models import User
from remote_pictures import RemotePicture
from tests.conftest import PASSWORD
from tests.helpers import actor_document
from tests.live import Browser, wait_for


def png(width=300, height=200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, "PNG", pnginfo=None)
    return out.getvalue()


@pytest.fixture
def app_config():
    return {
        "SITE_URL": "https://local.example",
        "FEDERATION_ALLOW_HTTP": True,
        "FEDERATION_ALLOW_PRIVATE": True,
    }


def picture_at(remote, path, data, content_type="image/png"):
    remote.routes[path] = (200, {"Content-Type": content_type}, data)


def account(app, remote, icon="/ann.png"):
    """A remote account found the way the site finds one (its actor document), whose icon
    is `icon` on the remote server; returns its user id."""
    document = actor_document(remote.base)
    document["icon"] = {"type": "Image", "url": remote.base + icon} if icon else None
    remote.json("/users/ann", document)
    with app.app_context():
        user = fedfetch.remote_account(document["id"])
        db.session.commit()
        return user.id


def refresh(app, user_id):
    with app.app_context():
        return remote_pictures.refresh(user_id)


def stored(app, user_id):
    with app.test_request_context():
        user = db.session.get_one(User, user_id)
        return user.avatar_version, user.avatar(48), db.session.get(RemotePicture, user_id)


def fetches(remote, path):
    return sum(1 for method, where, _h, _b in remote.requests if where == path)


def test_the_picture_is_made_like_an_upload_and_served_from_here(app, client, remote):
    picture_at(remote, "/ann.png", png())
    user_id = account(app, remote)
    assert refresh(app, user_id) == "made"
    version, url, record = stored(app, user_id)
    assert version and record.error is None and record.source_url == f"{remote.base}/ann.png"
    assert url.startswith(f"/avatars/{user_id}-48.webp")
    with app.app_context():
        for size in AVATAR_SIZES:
            with Image.open(avatars_dir() / f"{user_id}-{size}.webp") as image:
                assert image.format == "WEBP" and image.size == (size, size)
    with client.get(url) as response:
        assert response.status_code == 200 and response.mimetype == "image/webp"
    # The same icon again: nothing is fetched.
    assert refresh(app, user_id) == "unchanged"
    assert fetches(remote, "/ann.png") == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<html>not a picture</html>", "not a PNG, JPEG or WebP"),
        (b"", "empty"),
        (png(5000, 5000)[:100], "not a PNG, JPEG or WebP"),
    ],
)
def test_what_is_no_picture_is_refused_and_tried_again_later(app, remote, data, reason):
    picture_at(remote, "/ann.png", data)
    user_id = account(app, remote)
    assert refresh(app, user_id) == "failed"
    version, url, record = stored(app, user_id)
    assert version is None and url.endswith(".svg") and reason in record.error
    with app.app_context():
        assert remote_pictures.waiting(10) == []
        db.session.execute(
            sa.update(RemotePicture).values(fetched_at=record.fetched_at - timedelta(days=2))
        )
        db.session.commit()
        assert remote_pictures.waiting(10) == [user_id]


def test_a_picture_over_the_size_limit_is_not_read_whole(app, remote):
    app.config["MICROBLOG_AVATAR_MAX_BYTES"] = 2048
    picture_at(remote, "/ann.png", png() + b"\0" * 4096)
    user_id = account(app, remote)
    assert refresh(app, user_id) == "failed"
    assert stored(app, user_id)[0] is None


def test_the_fence_holds_for_pictures_too(app, remote):
    picture_at(remote, "/ann.png", png())
    user_id = account(app, remote)
    app.config.update(FEDERATION_ALLOW_HTTP=False, FEDERATION_ALLOW_PRIVATE=False)
    assert refresh(app, user_id) == "failed"
    assert fetches(remote, "/ann.png") == 0
    assert "plain http" in stored(app, user_id)[2].error


def test_a_new_icon_replaces_the_picture_and_no_icon_drops_it(app, remote):
    picture_at(remote, "/ann.png", png())
    picture_at(remote, "/new.png", png(64, 64))
    user_id = account(app, remote)
    refresh(app, user_id)
    first = stored(app, user_id)[0]
    with app.app_context():
        db.session.get_one(RemoteActor, user_id).icon_url = f"{remote.base}/new.png"
        db.session.commit()
    assert refresh(app, user_id) == "made"
    assert stored(app, user_id)[0] > first
    with app.app_context():
        db.session.get_one(RemoteActor, user_id).icon_url = None
        db.session.commit()
    assert refresh(app, user_id) == "no picture"
    version, url, record = stored(app, user_id)
    assert version is None and record is None and url.endswith(".svg")
    with app.app_context():
        assert list(avatars_dir().glob(f"{user_id}-*")) == []


def test_storing_an_icon_queues_a_fetch_once_committed(app, remote):
    picture_at(remote, "/ann.png", png())
    user_id = account(app, remote)
    queued = [task for task in tasks.huey.pending() if task.name == "fetch_remote_picture"]
    assert [task.args for task in queued] == [(user_id,)]
    with app.app_context():  # a change rolled back queues nothing
        db.session.get_one(RemoteActor, user_id).icon_url = f"{remote.base}/other.png"
        db.session.flush()
        db.session.rollback()
        db.session.get_one(RemoteActor, user_id).display_name = "Ann"
        db.session.commit()  # no icon change: nothing more
    assert len([t for t in tasks.huey.pending() if t.name == "fetch_remote_picture"]) == 1


def test_a_real_consumer_fetches_the_picture(app, remote, live):
    """The account is found here (as a search would); the worker makes its picture; the
    profile shows it from this site, and nothing on the page points at the other server."""
    picture_at(remote, "/ann.png", png())
    site = live(
        SITE_URL="http://local.example",  # plain http: the test's browser keeps its cookie
        FEDERATION_ALLOW_HTTP="true",
        FEDERATION_ALLOW_PRIVATE="true",
    )
    # The consumer reads the queue this test process writes to.
    site.env["HUEY_NAME"] = site.huey_name = tasks.huey.name
    site.start_consumer()
    site.start_web()
    user_id = account(app, remote)

    def made():
        return site.query("SELECT avatar_version FROM user WHERE id = ?", (user_id,))[0][0]

    wait_for(made, timeout=30, what=f"the picture\n{site.consumer_log()[-2000:]}")
    assert fetches(remote, "/ann.png") == 1
    browser = Browser(site.url)
    browser.login("alice", PASSWORD)
    status, body, _headers = browser.get(f"/user/ann@{remote.host}")
    assert status == 200
    page = body.decode()
    assert f'src="/avatars/{user_id}-128.webp?v=' in page
    # Nothing the browser loads by itself comes from the other server.
    assert f'src="{remote.base}' not in page and f'srcset="{remote.base}' not in page
    status, data, headers = browser.get(f"/avatars/{user_id}-128.webp")
    assert status == 200 and headers["Content-Type"] == "image/webp"
