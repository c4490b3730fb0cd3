"""Your account over the API: delete it, change its picture. Every response is checked
against the OpenAPI document (tests/test_api.py's client); the worker's side with a real
consumer at the end."""

import io
import json
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa
from PIL import Image

import administration
from database import db
from jobs import Task
from models import ApiToken, User
from task_support import upload_path
from tests.conftest import PASSWORD
from tests.live import wait_for
from tests.test_api import ApiClient
from tests.test_avatars_web import png


@pytest.fixture
def api(app, client):
    return ApiClient(app, client)


@pytest.fixture
def tokens(app, users):
    """A bearer token per user, issued directly (no slow password check)."""
    with app.app_context():
        issued = {
            name: ApiToken.issue(db.session.get_one(User, user_id))[0]
            for name, user_id in users.items()
        }
        db.session.commit()
    return issued


def tasks_of(app, user_id):
    with app.app_context():
        return db.session.scalars(sa.select(Task).where(Task.user_id == user_id)).all()


# --- deleting your account ------------------------------------------------------------


def test_delete_your_account_locks_it_and_revokes_the_token_at_once(app, api, users, tokens):
    alice = users["alice"]
    response = api.delete(
        f"/api/users/{alice}", token=tokens["alice"], json={"current_password": PASSWORD}
    )
    assert response.status_code == 202, response.json
    task = response.json
    assert (task["name"], task["status"]) == ("delete_account", "queued")
    assert response.headers["Location"] == f"/api/tasks/{task['id']}"
    with app.app_context():
        user = db.session.get_one(User, alice)
        assert user.disabled
        assert db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == alice)) is None
    # The token ended with the request that used it.
    assert api.get(f"/api/users/{alice}", token=tokens["alice"]).status_code == 401
    assert api.post("/api/tokens", basic=("alice", PASSWORD)).status_code == 401


def test_a_deletion_over_before_the_answer_is_a_204(app, api, users, tokens, immediate):
    """A small account can be gone, task and all, before the request answers."""
    alice = users["alice"]
    body = {"current_password": PASSWORD}
    response = api.delete(f"/api/users/{alice}", token=tokens["alice"], json=body)
    assert response.status_code == 204
    with app.app_context():
        assert db.session.get(User, alice) is None


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"current_password": "wrong password"}, 403, "The current password is wrong."),
        ({"current_password": ""}, 400, "required"),
        ({}, 400, "Missing fields: current_password."),
        ({"current_password": PASSWORD, "extra": "x"}, 400, "Unknown fields: extra."),
        ({"current_password": 12345678}, 400, "must be strings"),
    ],
    ids=["wrong", "empty", "missing", "unknown-field", "not-a-string"],
)
def test_account_deletion_refused_without_the_password(app, api, users, tokens, body, status, says):
    response = api.delete(f"/api/users/{users['alice']}", token=tokens["alice"], json=body)
    assert response.status_code == status
    assert says in response.json["message"] or says in json.dumps(response.json["errors"])
    assert not tasks_of(app, users["alice"])
    assert api.get("/api/users/1", token=tokens["alice"]).status_code == 200


def test_the_last_enabled_admin_cannot_delete_their_account(app, api, users, tokens):
    with app.app_context():
        administration.make_admin(db.session.get_one(User, users["alice"]))
        db.session.commit()
    body = {"current_password": PASSWORD}

    response = api.delete(f"/api/users/{users['alice']}", token=tokens["alice"], json=body)

    assert response.status_code == 409
    assert response.json["message"] == (
        "That is the last enabled admin: make another account an admin first."
    )
    assert not tasks_of(app, users["alice"])
    assert api.get("/api/users/1", token=tokens["alice"]).status_code == 200  # still valid


def test_account_deletion_needs_json(api, users, tokens):
    response = api.delete(f"/api/users/{users['alice']}", token=tokens["alice"], data="x")
    assert response.status_code == 415


def test_only_your_own_account_can_be_deleted(app, api, users, tokens):
    bob = users["bob"]
    # Alice's token with her own password, on Bob's account: refused, nothing happens.
    body = {"current_password": PASSWORD}
    response = api.delete(f"/api/users/{bob}", token=tokens["alice"], json=body)
    assert response.status_code == 403
    assert api.delete("/api/users/999999", token=tokens["alice"], json=body).status_code == 404
    assert api.delete(f"/api/users/{bob}", json=body).status_code == 401
    with app.app_context():
        assert not db.session.get_one(User, bob).disabled
    assert not tasks_of(app, bob)


# --- your picture ------------------------------------------------------------------------


def put_avatar(api, user_id, token, body: bytes, content_type="image/png"):
    return api.put(
        f"/api/users/{user_id}/avatar", token=token, data=body, content_type=content_type
    )


def test_upload_a_picture_as_the_body_then_a_second_waits(app, api, users, tokens):
    alice = users["alice"]
    response = put_avatar(api, alice, tokens["alice"], png())
    assert response.status_code == 202, response.json
    assert (response.json["name"], response.json["status"]) == ("process_avatar", "queued")
    assert response.headers["Location"] == f"/api/tasks/{response.json['id']}"
    # The file waits for the worker under the task's id.
    with app.app_context():
        assert upload_path(response.json["id"]).read_bytes() == png()
    # While that one is queued, another is a 409 naming it (here as a multipart body).
    second = api.put(
        f"/api/users/{alice}/avatar",
        token=tokens["alice"],
        data={"file": (io.BytesIO(png(colour=(0, 0, 255))), "me.png")},
        content_type="multipart/form-data",
    )
    assert second.status_code == 409
    assert second.json["task"]["id"] == response.json["id"]


def test_upload_a_picture_in_a_form(app, api, users, tokens):
    response = api.put(
        f"/api/users/{users['alice']}/avatar",
        token=tokens["alice"],
        data={"file": (io.BytesIO(png()), "me.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.json


def huge_png() -> bytes:
    """A small file that claims 10,000 × 10,000 pixels (a 1-bit image compresses well)."""
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"", "image/png", 400, "The file is empty."),
        (bytes(range(256)) * 40, "application/octet-stream", 400, "not a PNG, JPEG or WebP"),
        (png()[:60], "image/png", 400, "not a PNG, JPEG or WebP"),
        (b"GIF89a" + b"\0" * 100, "image/gif", 400, "not a PNG, JPEG or WebP"),
        (b'{"file": "me.png"}', "application/json", 400, "not a PNG, JPEG or WebP"),
        ("huge", "image/png", 400, "too many pixels"),
        # One byte over the limit: the check says so, with the limit.
        ("limit+1", "image/png", 413, "too large: the limit is 5 MiB"),
        # Far over it: refused before the body is read.
        ("limit+1M", "image/png", 413, "larger than the"),
    ],
    ids=["empty", "binary", "cut-short", "gif", "json", "huge", "over", "far-over"],
)
def test_a_bad_picture_is_refused_at_once(
    app, api, users, tokens, body, content_type, status, says
):
    limit = app.config["MICROBLOG_AVATAR_MAX_BYTES"]
    body = {
        "huge": huge_png,
        "limit+1": lambda: png() + b"\0" * (limit + 1 - len(png())),
        "limit+1M": lambda: b"\0" * (limit + 2**20),
    }.get(body, lambda: body)()
    response = put_avatar(api, users["alice"], tokens["alice"], body, content_type)
    assert response.status_code == status
    assert says in response.json["message"]
    assert not tasks_of(app, users["alice"])


@pytest.mark.parametrize(
    ("data", "says"),
    [({}, "Missing the uploaded file"), ({"file": "not a file"}, "Missing the uploaded file")],
)
def test_a_form_without_its_file_is_a_400(api, users, tokens, data, says):
    response = api.put(
        f"/api/users/{users['alice']}/avatar",
        token=tokens["alice"],
        data=data,
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert says in response.json["message"]


def test_only_your_own_picture_can_be_changed(app, api, users, tokens):
    assert put_avatar(api, users["bob"], tokens["alice"], png()).status_code == 403
    assert put_avatar(api, 999999, tokens["alice"], png()).status_code == 404
    assert put_avatar(api, users["bob"], None, png()).status_code == 401
    assert not tasks_of(app, users["bob"]) and not tasks_of(app, users["alice"])


# --- with the worker ------------------------------------------------------------------------


def call(base, method, path, token, body: bytes | None = None, content_type=None):
    """One request to the live site; (status, parsed JSON body)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(base + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")


@pytest.mark.consumer
def test_picture_then_account_deletion_with_a_real_consumer(app, users, tokens, live):
    site = live()
    base = site.start_web()
    site.start_consumer()
    alice, token = users["alice"], tokens["alice"]

    status, task = call(base, "PUT", f"/api/users/{alice}/avatar", token, png(), "image/png")
    assert status == 202, task
    done = site.wait_for_status(task["id"], "done", "failed")
    assert done["status"] == "done", done
    status, user = call(base, "GET", f"/api/users/{alice}", token)
    assert status == 200
    assert user["_links"]["avatar"].startswith(f"/avatars/{alice}-128.webp?v=")
    assert len(list((site.data_dir / "avatars").iterdir())) == 4

    password = json.dumps({"current_password": PASSWORD}).encode()
    status, task = call(base, "DELETE", f"/api/users/{alice}", token, password, "application/json")
    assert status == 202, task
    assert call(base, "GET", f"/api/users/{alice}", token)[0] == 401  # revoked at once

    def gone():  # the task row goes with the account; the files after it
        user = site.query("SELECT id FROM user WHERE id = ?", (alice,))
        return not user and not list((site.data_dir / "avatars").iterdir())

    wait_for(gone, timeout=60, what="the account and its pictures to be deleted")
    assert site.query("SELECT count(*) FROM post WHERE user_id = ?", (alice,)) == [(0,)]
