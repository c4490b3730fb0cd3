"""Static files under content-hashed URLs (`app.css?v=3f2a…`), cached by browsers for a year.

Every `url_for(<…>static, filename=…)` gets `v=<hash of the file>`: a changed file gets a
new URL, so browsers can keep the old one for good instead of asking again on every page.
A URL without the right hash is served as before, revalidated each time.
"""

import hashlib
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.security import safe_join

LONG_CACHE = "public, max-age=31536000, immutable"
HASH_LENGTH = 12


def init_app(app: Flask) -> None:
    hashes: dict[tuple[str, str], str | None] = {}  # each file is read once per process

    def digest(endpoint: str, filename: str) -> str | None:
        key = (endpoint, filename)
        if key not in hashes:
            hashes[key] = _file_hash(_static_folder(app, endpoint), filename)
        return hashes[key]

    @app.url_defaults
    def add_hash(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint.endswith("static") and "filename" in values and "v" not in values:
            value = digest(endpoint, values["filename"])
            if value:
                values["v"] = value

    @app.after_request
    def cache_hashed(response: Response) -> Response:
        endpoint = request.endpoint or ""
        if endpoint.endswith("static") and response.status_code in (200, 304):
            filename = (request.view_args or {}).get("filename", "")
            if request.args.get("v") and request.args.get("v") == digest(endpoint, filename):
                response.headers["Cache-Control"] = LONG_CACHE
        return response


def _static_folder(app: Flask, endpoint: str) -> str | None:
    if endpoint == "static":
        return app.static_folder
    blueprint = app.blueprints.get(endpoint.rsplit(".", 1)[0])
    return blueprint.static_folder if blueprint else None


def _file_hash(folder: str | None, filename: str) -> str | None:
    path = safe_join(folder, filename) if folder else None
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:HASH_LENGTH]
