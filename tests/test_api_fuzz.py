"""Property-based fuzz of the JSON API, driven by its own OpenAPI document.

A real gunicorn (two worker processes, database migrated with Alembic) serves the
app on a free 127.0.0.1 port; schemathesis generates valid and invalid requests
for every documented operation and checks that none gets a 5xx and every response
matches the document (status, content type, headers, body).
"""

import base64
import contextlib
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from api import document as api_document
from database import db
from microblog import create_app
from models import ApiToken, User
from tests.conftest import PASSWORD
from tests.live import BIN, CSRF_FIELD, PROJECT_DIR, server_env, start_gunicorn, stop_process

EXAMPLES = 12  # per operation and generation mode: enough to shake out 5xx, still quick


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'app.db'}"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, password_hash):
    """A data dir migrated with Alembic (as `./run.sh` does), with two users: `fuzzer`, whose
    token the fuzz uses (so it may rename it), and `pager`, for the web pages."""
    data_dir = tmp_path_factory.mktemp("fuzz")
    subprocess.run(
        [BIN / "flask", "--app", "microblog", "db", "upgrade"],
        cwd=PROJECT_DIR,
        env=server_env(data_dir, SECRET_KEY="fuzz"),
        check=True,
        capture_output=True,
    )
    app = create_app({"DATA_DIR": str(data_dir), "SQLALCHEMY_DATABASE_URI": database_url(data_dir)})
    with app.app_context():
        for name in ("fuzzer", "pager"):
            db.session.add(
                User(username=name, email=f"{name}@example.com", password_hash=password_hash)
            )
        db.session.commit()
        db.engine.dispose()
    return data_dir


@contextlib.contextmanager
def gunicorn(data_dir: Path, factory: str, *options: str):
    """gunicorn (tests/live.py) on the data dir; yields its base URL."""
    log = data_dir / f"gunicorn-{uuid.uuid4().hex[:8]}.log"
    process = start_gunicorn(log, server_env(data_dir, SECRET_KEY="fuzz"), *options, app=factory)
    try:
        yield process.url
    finally:
        stop_process(process)
    # A traceback in the server log means a request crashed somewhere.
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def live_server(data_dir):
    app = create_app({"DATA_DIR": str(data_dir), "SQLALCHEMY_DATABASE_URI": database_url(data_dir)})
    # The per-address limits would otherwise turn most token requests, registrations and
    # password checks into 429s.
    limits = ("API_TOKEN_LIMIT_PER_IP", "REGISTER_LIMIT_PER_IP", "SIGN_IN_LIMIT_PER_IP")
    factory = f"microblog:create_app({ {name: 1000000 for name in limits}!r})"
    with gunicorn(data_dir, factory, "--workers", "2") as base_url:
        yield {"base_url": base_url, "app": app}
    with app.app_context():
        db.engine.dispose()


def issue_token(live_server) -> str:
    """A token for `fuzzer`, made directly in the database (no slow password check). Found by
    its email, which needs the password to change: the fuzz may have renamed it."""
    with live_server["app"].app_context():
        user = db.session.scalar(db.select(User).where(User.email == "fuzzer@example.com"))
        token, _ = ApiToken.issue(user)
        db.session.commit()
        return token


@pytest.fixture(scope="module")
def fuzz_token(live_server):
    return issue_token(live_server)


# The same document the server publishes (test_api checks that they are equal); loaded
# here so that pytest can list one test per operation before the server starts.
schema = schemathesis.openapi.from_dict(
    api_document(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {
                # Unknown query parameters are ignored, as most web APIs do, not refused.
                "allow-extra-parameters": False,
                # We send the Authorization header ourselves (a live token).
                "with-security-parameters": False,
            },
            # Schema-valid data may still get a 400: a taken username, an email address
            # the validator finds undeliverable. Every other check stays on.
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    ),
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the project
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz(case, live_server, fuzz_token):
    if case.operation.path == "/api/tokens" and case.method == "POST":
        authorization = basic("fuzzer", PASSWORD)
    elif case.operation.path == "/api/tokens" and case.method == "DELETE":
        authorization = f"Bearer {issue_token(live_server)}"  # revoking must not end the run
    else:
        authorization = f"Bearer {fuzz_token}"
    response = case.call(base_url=live_server["base_url"], headers={"Authorization": authorization})
    if is_gunicorn_line_limit(response):
        # gunicorn refuses over-long request lines with its own HTML 400 before the app
        # sees them; that limit (4094 bytes) guards the server and is not the API's to shape.
        assert len(response.request.url) > GUNICORN_REQUEST_LINE_LIMIT
        return
    case.validate_response(response)


GUNICORN_REQUEST_LINE_LIMIT = 4094

# Inputs that once made a 500 (and a mail to the admins each): a lone UTF-16 surrogate in
# any JSON string, JSON nested 1,000 deep, numbers too big for the database or for int().
SURROGATE = "\\ud800"  # as written in JSON text
ODD_BODIES = {
    "surrogate password": '{"username": "odd", "email": "odd@example.com", "password": '
    f'"{SURROGATE} and more"}}',
    "surrogate username": f'{{"username": "o{SURROGATE}", "email": "o@example.com", '
    '"password": "long enough"}',
    "surrogate name": f'{{"{SURROGATE}": "x"}}',
    "nested 1000 deep": "[" * 1000 + "]" * 1000,
    "nested field": '{"username": ' + "[" * 1000 + "]" * 1000 + "}",
    "5000-digit number": '{"username": ' + "9" * 5000 + "}",
}
ODD_TARGETS = [
    ("POST", "/api/users"),
    ("PUT", "/api/users/1"),
    ("POST", "/api/posts"),
    ("POST", "/api/tasks"),
]
HUGE = "99999999999999999999"


@pytest.mark.parametrize("name", sorted(ODD_BODIES))
@pytest.mark.parametrize(("method", "path"), ODD_TARGETS)
def test_odd_json_is_a_400(live_server, fuzz_token, name, method, path):
    response = requests.request(
        method,
        live_server["base_url"] + path,
        data=ODD_BODIES[name].encode(),
        headers={"Authorization": f"Bearer {fuzz_token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        f"/api/users?page={HUGE}",
        f"/api/users/1/posts?page={HUGE}",
        f"/api/users/1/followers?page={HUGE}&per_page={HUGE}",
        f"/api/timeline?page={HUGE}",
        f"/api/tasks?page={HUGE}",
        f"/api/users/{HUGE}",
        f"/api/posts/{HUGE}",
    ],
)
def test_huge_numbers_in_the_api_are_4xx(live_server, fuzz_token, path):
    response = requests.get(
        live_server["base_url"] + path, headers={"Authorization": f"Bearer {fuzz_token}"}
    )
    assert response.status_code in (400, 404), response.text


@pytest.mark.parametrize(
    "path", ["/index", "/explore", "/user/pager", "/tasks", "/messages", "/search?q=x"]
)
def test_huge_page_numbers_on_pages_are_404(live_server, path):
    separator = "&" if "?" in path else "?"
    session = requests.Session()
    page = session.get(live_server["base_url"] + "/login").text
    token = CSRF_FIELD.search(page).group(1)
    login = {"username": "pager", "password": PASSWORD, "csrf_token": token}
    assert session.post(live_server["base_url"] + "/login", data=login).status_code == 200
    response = session.get(f"{live_server['base_url']}{path}{separator}page={HUGE}")
    assert response.status_code == 404


def is_gunicorn_line_limit(response) -> bool:
    return (
        response.status_code == 400
        # schemathesis keeps headers with lowercase names and a list of values each
        and response.headers.get("content-type", [""])[0].startswith("text/html")
        and b"Request Line is too large" in response.content
    )


def test_token_limit_is_shared_by_gunicorn_workers(data_dir):
    """Every request is served by a fresh worker process (`--max-requests 1`, forked
    from a master that never serves): a count kept in process memory would never
    reach the limit.
    """
    options = ("--preload", "--workers", "2", "--max-requests", "1")
    factory = 'microblog:create_app({"API_TOKEN_LIMIT_PER_USER": 3})'
    with gunicorn(data_dir, factory, *options) as base_url:
        statuses = []
        for _ in range(5):
            response = requests.post(
                f"{base_url}/api/tokens", headers={"Authorization": basic("limited", "wrong")}
            )
            statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429]
    assert int(response.headers["Retry-After"]) > 0
