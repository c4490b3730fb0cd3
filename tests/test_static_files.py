"""Static files: content-hashed URLs, cached for a year; unhashed URLs revalidated."""

import hashlib
import re

from microblog import create_app
from static_files import HASH_LENGTH, LONG_CACHE

STATIC_URL = re.compile(r'(?:href|src)="(/(?:bootstrap/)?static/[^"?]+)\?v=([0-9a-f]+)"')


def test_static_urls_carry_the_content_hash_and_are_cached_long(client):
    html = client.get("/login").get_data(as_text=True)
    found = dict(STATIC_URL.findall(html))
    scripts = {"/static/core.js", "/static/task_banners.js"}
    assert {"/static/app.css", "/static/favicon.svg", *scripts} <= set(found)
    assert any(url.startswith("/bootstrap/static/") for url in found)
    for url, digest in found.items():
        assert len(digest) == HASH_LENGTH
        with client.get(f"{url}?v={digest}") as response:
            assert response.status_code == 200
            assert response.headers["Cache-Control"] == LONG_CACHE
            assert hashlib.sha256(response.get_data()).hexdigest()[:HASH_LENGTH] == digest
        with client.get(url) as response:  # no hash, or an old one: ask again next time
            assert response.headers.get("Cache-Control") != LONG_CACHE
        with client.get(f"{url}?v=0123456789ab") as response:
            assert response.headers.get("Cache-Control") != LONG_CACHE


def test_a_changed_file_gets_a_new_url(tmp_path):
    (tmp_path / "static").mkdir()
    for content in ("one", "two"):
        (tmp_path / "static" / "x.css").write_text(content)
        app = create_app({"DATA_DIR": str(tmp_path), "TESTING": True})
        app.static_folder = str(tmp_path / "static")
        with app.test_request_context():
            from flask import url_for

            url = url_for("static", filename="x.css")
        assert url == f"/static/x.css?v={hashlib.sha256(content.encode()).hexdigest()[:12]}"
    with app.test_request_context():
        assert url_for("static", filename="missing.css") == "/static/missing.css"
