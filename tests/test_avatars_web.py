"""Avatars on the pages: generated here by default (no third party), uploaded ones made by
the worker and served with long caching, Gravatar only when the site turns it on."""

import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from avatars import AVATAR_SIZES
from database import db
from jobs import Task
from models import User
from tests.conftest import PASSWORD
from tests.helpers import add_posts
from tests.live import Browser, wait_for

PAGES = ["/index", "/explore", "/user/bob", "/user/bob/popup", "/user/alice/followers",
         "/settings", "/edit_profile", "/tasks", "/messages", "/search?q=post"]  # fmt: skip


def png(width=300, height=200, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def test_no_page_refers_to_a_third_party_by_default(app, client, auth, users):
    add_posts(app, users["bob"], 2)
    assert "gravatar.com" not in client.get("/login").get_data(as_text=True)
    auth.login()
    for url in PAGES:
        response = client.get(url)
        html = response.get_data(as_text=True)
        assert response.status_code == 200, url
        assert "gravatar.com" not in html, url
        assert "gravatar.com" not in response.headers["Content-Security-Policy"]
    assert "/avatar/bob/48.svg" in client.get("/explore").get_data(as_text=True)


def test_gravatar_when_turned_on(app, client, auth, users):
    app.config["MICROBLOG_GRAVATAR"] = True
    auth.login()
    response = client.get("/user/bob")
    assert "https://www.gravatar.com/avatar/" in response.get_data(as_text=True)
    assert "https://www.gravatar.com" in response.headers["Content-Security-Policy"]


def test_the_generated_picture(client):
    response = client.get("/avatar/alice/48.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.get_data(as_text=True).startswith("<svg")
    assert "max-age=86400" in response.headers["Cache-Control"]
    assert client.get("/avatar/alice/0.svg").status_code == 404
    assert client.get("/avatar/alice/5000.svg").status_code == 404


def test_upload_made_by_the_task(app, client, auth, users, immediate):
    auth.login()
    form = {"username": "alice", "about_me": "", "avatar": (io.BytesIO(png()), "me.png")}
    response = client.submit("/edit_profile", form, content_type="multipart/form-data")
    assert response.status_code == 302
    with app.app_context():
        user = db.session.get_one(User, users["alice"])
        task = db.session.scalars(sa.select(Task).where(Task.name == "process_avatar")).one()
        assert (task.status, task.message) == ("done", "Your new picture is in place.")
        version = user.avatar_version
        assert version
    folder = Path(app.config["DATA_DIR"]) / "avatars"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{users['alice']}-{size}.webp" for size in AVATAR_SIZES
    )
    html = client.get("/user/alice").get_data(as_text=True)
    url = f"/avatars/{users['alice']}-128.webp?v={version}"
    assert f'src="{url}"' in html
    with client.get(url) as picture:
        assert picture.status_code == 200 and picture.mimetype == "image/webp"
        assert "immutable" in picture.headers["Cache-Control"]
        assert "max-age=31536000" in picture.headers["Cache-Control"]
        assert Image.open(io.BytesIO(picture.data)).size == (128, 128)
    assert client.get("/avatars/..%2Fapp.db").status_code == 404
    assert not list((Path(app.config["DATA_DIR"]) / "imports").iterdir())


def test_a_bad_picture_is_refused_at_once_with_its_reason(app, client, auth, users, immediate):
    auth.login()
    form = {
        "username": "alice",
        "about_me": "changed",
        "avatar": (io.BytesIO(b"not a png"), "me.png"),
    }
    response = client.submit("/edit_profile", form, content_type="multipart/form-data")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "This is not a PNG, JPEG or WebP picture, or it is damaged." in page
    with app.app_context():
        assert db.session.scalars(sa.select(Task)).all() == []
        alice = db.session.get_one(User, users["alice"])
        assert (alice.avatar_version, alice.about_me) == (None, None)
    # In the reader's language.
    form["avatar"] = (io.BytesIO(b"GIF89a" + b"\0" * 50), "me.png")
    spanish = {"Accept-Language": "es"}
    response = client.submit(
        "/edit_profile", form, content_type="multipart/form-data", headers=spanish
    )
    assert response.status_code == 400
    assert "Esto no es una imagen PNG, JPEG o WebP" in response.get_data(as_text=True)
    form["avatar"] = (io.BytesIO(png()), "me.gif")
    response = client.submit("/edit_profile", form, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "Choose a PNG, JPEG or WebP picture." in response.get_data(as_text=True)


@pytest.mark.parametrize("app_config", [{"MICROBLOG_AVATAR_MAX_BYTES": 2000}])
def test_a_picture_over_the_limit_is_refused(app, client, auth, users, immediate):
    auth.login()
    big = png(2000, 2000)  # random-free but large enough to pass 2000 + form room
    noise = big + b"\0" * 70_000
    form = {"username": "alice", "about_me": "", "avatar": (io.BytesIO(noise), "me.png")}
    response = client.submit("/edit_profile", form, content_type="multipart/form-data")
    assert response.status_code == 413


@pytest.mark.consumer
def test_upload_through_the_worker_and_account_deletion_removes_it(app, users, live):
    site = live()
    site.start_web()
    site.start_consumer()
    browser = Browser(site.url)
    browser.login("alice", PASSWORD)
    fields = {"username": "alice", "about_me": ""}
    status, _ = browser.upload("/edit_profile", "me.png", png(), "avatar", fields)
    assert status == 200
    task = site.wait_for_status(site.task()["id"], "done", "failed")
    assert task["status"] == "done", task
    page = browser.get("/user/alice")[1].decode()
    # The profile's picture (the navbar's is the 48 px one).
    (url,) = set(re.findall(r'src="(/avatars/[0-9]+-128\.webp[^"]*)"', page))
    status, body, headers = browser.get(url.replace("&amp;", "&"))
    assert status == 200 and headers["Content-Type"] == "image/webp"
    folder = site.data_dir / "avatars"
    assert len(list(folder.iterdir())) == len(AVATAR_SIZES)

    browser.submit("/settings/delete", {"current_password": PASSWORD}, token_from="/settings")
    wait_for(lambda: not list(folder.iterdir()), what="the pictures to be deleted")


def test_the_page_script_asks_for_the_new_urls(app, client, auth, users, immediate):
    """/avatar_urls: your picture's URL per size asked for (what static/avatar_swap.js swaps in)."""
    assert client.get("/avatar_urls?size=48").status_code == 302  # to the login page
    auth.login()
    assert client.get("/avatar_urls?size=24&size=128").json == {
        "24": "/avatar/alice/24.svg",
        "128": "/avatar/alice/128.svg",
    }
    form = {"username": "alice", "about_me": "", "avatar": (io.BytesIO(png()), "me.png")}
    client.submit("/edit_profile", form, content_type="multipart/form-data")
    with app.app_context():
        version = db.session.get_one(User, users["alice"]).avatar_version
    alice = users["alice"]
    assert client.get("/avatar_urls?size=24&size=128&size=0&size=5000").json == {
        "24": f"/avatars/{alice}-48.webp?v={version}",
        "128": f"/avatars/{alice}-128.webp?v={version}",
    }
    assert client.get("/avatar_urls?size=24&size=x").status_code == 400
    assert client.get("/avatar_urls").json == {}
    # Every picture of hers on a page says whose it is, for the script to find.
    html = client.get("/user/alice").get_data(as_text=True)
    mine = re.findall(rf'<img [^>]*data-avatar-user="{alice}"', html)
    assert len(mine) == 2  # the navbar and the profile
