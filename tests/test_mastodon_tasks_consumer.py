"""What the worker does for a Mastodon app, with a real gunicorn and huey_consumer: a
token from the password grant, then an export, an import and a new picture, each followed
through the Mastodon API to its end."""

import io
import json

import pytest
import requests

from tests.conftest import PASSWORD
from tests.helpers import add_posts, export_document
from tests.live import wait_for
from tests.mastodon_support import bearer, make_app
from tests.test_mastodon_api import png_bytes

pytestmark = pytest.mark.consumer


def finished(base, token, task_id):
    """The task once it is no longer queued or running, else None."""
    task = requests.get(f"{base}/api/v1/microblog/tasks/{task_id}", headers=bearer(token)).json()
    return task if task["status"] not in ("queued", "running") else None


def password_token(app, base, username):
    client_id, secret = make_app(app)
    response = requests.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "password",
            "client_id": client_id,
            "client_secret": secret,
            "username": username,
            "password": PASSWORD,
            "scope": "read write",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_export_import_and_picture_through_the_mastodon_api(app, users, live):
    add_posts(app, users["alice"], 120)
    site = live()
    base = site.start_web()
    site.start_consumer()
    alice, bob = password_token(app, base, "alice"), password_token(app, base, "bob")

    started = requests.post(f"{base}/api/v1/microblog/exports", headers=bearer(alice))
    assert started.status_code == 202, started.text
    task_id = started.json()["id"]
    task = wait_for(lambda: finished(base, alice, task_id), timeout=60, what="the export")
    assert (task["status"], task["progress"]) == ("done", 100), task
    download = requests.get(task["download_url"], headers=bearer(alice))
    assert download.status_code == 200
    assert download.json() == export_document(app, users["alice"])
    assert requests.get(task["download_url"], headers=bearer(bob)).status_code == 404

    archive = json.dumps(download.json()).encode()
    imported = requests.post(
        f"{base}/api/v1/microblog/imports",
        headers=bearer(bob),
        files={"file": ("posts.json", io.BytesIO(archive), "application/json")},
    )
    assert imported.status_code == 202, imported.text
    task = wait_for(
        lambda: finished(base, bob, imported.json()["id"]), timeout=60, what="the import"
    )
    assert task["status"] == "done", task
    me = requests.get(f"{base}/api/v1/accounts/verify_credentials", headers=bearer(bob)).json()
    assert me["statuses_count"] == 120

    before = me["avatar"]
    changed = requests.patch(
        f"{base}/api/v1/accounts/update_credentials",
        headers=bearer(bob),
        files={"avatar": ("me.png", io.BytesIO(png_bytes()), "image/png")},
    )
    assert changed.status_code == 200, changed.text

    def new_picture():
        shown = requests.get(f"{base}/api/v1/accounts/verify_credentials", headers=bearer(bob))
        return shown.json()["avatar"] if shown.json()["avatar"] != before else None

    avatar = wait_for(new_picture, timeout=60, what="the new picture")
    assert "/avatars/" in avatar
    assert requests.get(avatar).headers["Content-Type"] == "image/webp"
