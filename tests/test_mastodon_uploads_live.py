"""Uploads to the Mastodon API through the real web server: without a valid token they are
refused from the request's head, before the body is read (an import may be 2 GiB)."""

from tests.test_security_live import answer_before_the_body


def test_an_upload_without_a_token_is_refused_before_its_body_is_read(live):
    site = live()
    site.start_web()
    uploads = {
        ("POST", "/api/v1/microblog/imports"): 500 * 1024 * 1024,
        ("PATCH", "/api/v1/accounts/update_credentials"): 4 * 1024 * 1024,
    }
    status_lines = {
        f"{method} {path}": (answer_before_the_body(site.url, method, path, size) or b"").split(
            b"\r\n"
        )[0]
        for (method, path), size in uploads.items()
    }
    assert status_lines == {
        "POST /api/v1/microblog/imports": b"HTTP/1.1 401 UNAUTHORIZED",
        "PATCH /api/v1/accounts/update_credentials": b"HTTP/1.1 401 UNAUTHORIZED",
    }
