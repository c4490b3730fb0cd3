"""Clients written for the tutorial's API chapter work against ours unchanged.

HTTPie, exactly as the chapter drives it, against a live gunicorn; and JSON errors for
any URL of the site when the client asks for JSON.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.helpers import assert_json_error

HTTP = Path(shutil.which("http") or Path(__file__).parent.parent / ".venv/bin/http")


def httpie(*args) -> dict:
    """Run HTTPie; the parsed JSON body plus its status (`--check-status` off)."""
    result = subprocess.run(
        [HTTP, "--ignore-stdin", "--print=b", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.fixture
def site(live):
    if not HTTP.exists():
        pytest.skip("HTTPie is not installed (requirements-dev.txt); tutorial client test skipped")
    site = live()
    site.start_web()
    return site


def test_the_chapters_httpie_session(site):
    url = site.url
    # Registration with about_me, as in the chapter (with a password our rules accept).
    user = httpie(
        "POST",
        f"{url}/api/users",
        "username=dave",
        f"password={PASSWORD}",
        "email=dave@example.com",
        "about_me=Hello, my name is Dave.",
    )
    assert (user["username"], user["about_me"]) == ("dave", "Hello, my name is Dave.")
    token = httpie("--auth", f"dave:{PASSWORD}", "POST", f"{url}/api/tokens")["token"]
    bearer = f"Authorization:Bearer {token}"
    fetched = httpie("GET", f"{url}/api/users/{user['id']}", bearer)
    assert fetched["about_me"] == "Hello, my name is Dave."
    changed = httpie("PUT", f"{url}/api/users/{user['id']}", "about_me=Hi, I am Dave.", bearer)
    assert changed["about_me"] == "Hi, I am Dave."
    # The whole fetched object sent back (HTTPie reads a JSON body from a file with @).
    fetched["about_me"] = "Round trip."
    body = site.data_dir / "user.json"
    body.write_text(json.dumps(fetched))
    with body.open() as stdin:
        result = subprocess.run(
            [HTTP, "--print=b", "PUT", f"{url}/api/users/{user['id']}", bearer],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert json.loads(result.stdout)["about_me"] == "Round trip."


# Anywhere on the site, not only under /api: (method, path, status).
MISSES = [
    ("GET", "/no/such/page", 404),
    ("GET", "/static/nothing.css", 404),
    ("GET", "/api/no/such/endpoint", 404),
    ("DELETE", "/index", 405),
    ("GET", "/export_posts", 405),
]


@pytest.mark.parametrize(("method", "path", "status"), MISSES)
def test_errors_are_json_when_asked_for(site, method, path, status):
    import requests

    response = requests.request(
        method, site.url + path, headers={"Accept": "application/json"}, timeout=30
    )
    assert_json_error(response, status)


def test_browsers_still_get_the_error_page(site):
    import requests

    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = requests.get(site.url + "/no/such/page", headers={"Accept": browser_accept})
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Not found" in response.text
