"""The task flow over the API with a real consumer: token → POST task → poll → download."""

import base64
import json
import os
import urllib.error
import urllib.request

import pytest

from tests.conftest import PASSWORD
from tests.helpers import AWKWARD_BODY, add_posts, export_document
from tests.live import wait_for

pytestmark = pytest.mark.consumer
REDIS_URL = os.environ.get("REDIS_URL")


def call(base, method, path, token=None, basic=None, body=None):
    """One API request; returns (status, parsed JSON body, headers)."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), error.headers


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_export_over_the_api_with_a_real_consumer(app, users, live, backend):
    if backend == "redis" and not REDIS_URL:
        pytest.skip("REDIS_URL is not set: the Redis variant runs only where Redis is available")
    add_posts(app, users["alice"], 2500, body=AWKWARD_BODY)
    add_posts(app, users["bob"], 3, body=AWKWARD_BODY)
    site = live(REDIS_URL if backend == "redis" else None, MICROBLOG_EXPORT_BATCH_SIZE=500)
    base = site.start_web()
    site.start_consumer()

    status, body, _ = call(base, "POST", "/api/tokens", basic=f"alice:{PASSWORD}")
    assert status == 200
    token = body["token"]

    status, task, headers = call(base, "POST", "/api/tasks", token, body={"name": "export_posts"})
    assert status == 202, task
    assert headers["Location"] == f"/api/tasks/{task['id']}"

    def finished():
        _, current, _ = call(base, "GET", headers["Location"], token)
        return current if current["status"] not in ("queued", "running") else None

    task = wait_for(finished, timeout=60, interval=0.05, what="the export to finish")
    assert (task["status"], task["progress"]) == ("done", 100), task

    status, export, _ = call(base, "GET", task["_links"]["download"], token)
    assert status == 200
    assert export == export_document(app, users["alice"])
    assert len(export["posts"]) == 2500

    # Bob's token sees neither the task nor its file.
    _, bob, _ = call(base, "POST", "/api/tokens", basic=f"bob:{PASSWORD}")
    assert call(base, "GET", f"/api/tasks/{task['id']}", bob["token"])[0] == 404
    assert call(base, "GET", f"/api/tasks/{task['id']}/download", bob["token"])[0] == 404
