"""The web server's question to the app before it reads a large request body.

web_server.py buffers a whole request before an app thread gets it. For a request whose
declared body is larger than HEAD_CHECK_BYTES it first calls the app with the head alone:
HEAD_CHECK set in the environ and an empty body. The app answers with a refusal (sign in
first, 401, 413…), which the server sends without reading the body, or with `go_on()`.
"""

from flask import Response

HEAD_CHECK_BYTES = 64 * 1024
HEAD_CHECK = "microblog.head_check"
HEAD_CHECK_HEADER = "X-Microblog-Go-On"


def go_on() -> Response:
    """The answer that lets the web server read the body."""
    response = Response(status=204)
    response.headers[HEAD_CHECK_HEADER] = "1"
    return response
