"""Shared fixtures: an app on a temporary data dir, a CSRF-aware client, users."""

import subprocess

import pytest
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

import administration
from database import db
from microblog import create_app
from tests.helpers import Remote, add_user
from tests.live import CSRF_FIELD, free_port

PASSWORD = "correct horse battery"


class Client(FlaskClient):
    """A test client that can submit forms with a real CSRF token, as a browser does."""

    def csrf_token(self) -> str:
        html = self.get("/login", follow_redirects=True).get_data(as_text=True)
        match = CSRF_FIELD.search(html)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def submit(self, url, data=None, **kwargs):
        """POST a form with the CSRF token added."""
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf_token())
        return self.post(url, data=data, **kwargs)


@pytest.fixture(scope="session")
def password_hash():
    # Hashing is deliberately slow: do it once per test session.
    return generate_password_hash(PASSWORD)


@pytest.fixture
def app_config():
    """Extra configuration for the `app` fixture; override it in a test module."""
    return {}


@pytest.fixture
def app(tmp_path, monkeypatch, app_config):
    for name in ("DATABASE_URL", "MAIL_SERVER", "SECRET_KEY", "REDIS_URL", "ADMINS"):
        monkeypatch.delenv(name, raising=False)
    app = create_app(
        {
            "TESTING": True,
            "DATA_DIR": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'app.db'}",
            "POSTS_PER_PAGE": 3,
            **app_config,
        }
    )
    app.test_client_class = Client
    with app.app_context():
        db.create_all()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_user(app, password_hash):
    """Create a user with the shared test password; returns its id."""

    def make(username, email=None, about_me=None):
        return add_user(app, username, password_hash, email, about_me)

    return make


@pytest.fixture
def users(make_user):
    """Three users: alice, bob and carol."""
    return {name: make_user(name) for name in ("alice", "bob", "carol")}


@pytest.fixture
def admin(app, make_user):
    """An admin account called "root" (the shared test password); returns its id."""
    from models import User

    user_id = make_user("root")
    with app.app_context():
        administration.make_admin(db.session.get_one(User, user_id))
        db.session.commit()
    return user_id


@pytest.fixture
def flask_cli(app, tmp_path):
    """Run `flask --app microblog ARGS` (a real process) on the `app` fixture's data dir, or
    on `data_dir`, with `env` added; returns the finished process (text output)."""
    import subprocess

    from tests.live import BIN, PROJECT_DIR, server_env

    def run(*args, stdin="", data_dir=tmp_path, **env):
        return subprocess.run(
            [BIN / "flask", "--app", "microblog", *args],
            cwd=PROJECT_DIR,
            env=server_env(data_dir, **env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, username="alice", password=PASSWORD, **extra):
        data = {"username": username, "password": password, **extra}
        return self._client.submit("/login", data)

    def logout(self):
        return self._client.submit("/logout")


@pytest.fixture
def auth(client, users):
    return AuthActions(client)


# --- a real SMTP server ------------------------------------------------------------


class SMTPRecorder:
    """aiosmtpd handler that keeps every received message, parsed."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        import email
        from email import policy

        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1; `.messages` holds what it received."""
    from aiosmtpd.controller import Controller

    recorder = SMTPRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    recorder.host, recorder.port = controller.hostname, controller.port
    try:
        yield recorder
    finally:
        controller.stop()


# --- a translation server (LibreTranslate's API) ----------------------------------------


@pytest.fixture
def translator():
    """A LibreTranslate stand-in on a free port (tests.helpers.TranslationServer)."""
    from tests.helpers import TranslationServer

    server = TranslationServer()
    yield server
    server.stop()


# --- a live server and a real browser ------------------------------------------------


@pytest.fixture
def live_server(app):
    """Serve `app` on 127.0.0.1 from a thread; yields the base URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (never a downloaded browser)."""
    import shutil

    executable = shutil.which("chromium")
    if not executable:
        pytest.skip("chromium is not installed (apt-get install chromium); browser test skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def browser_login(page, base_url, username="alice", password=PASSWORD):
    page.goto(f"{base_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/index")


# --- PostgreSQL (only when TEST_DATABASE_URL is set) --------------------------------------


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh, uniquely named PostgreSQL database for this test session; dropped afterwards."""
    import os
    import uuid

    import sqlalchemy as sa

    base_url = os.environ.get("TEST_DATABASE_URL")
    if not base_url:
        pytest.skip("TEST_DATABASE_URL is not set; PostgreSQL tests skipped")
    name = f"microblog_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_app(postgres_url, tmp_path, password_hash):
    """The app on a migrated PostgreSQL database with alice and bob."""
    from flask_migrate import downgrade, upgrade

    from models import User
    from schema_migrations import init_migrations

    # Rate limits counted in the database, like the rest of the test (a Redis shared with
    # other test runs would carry their counts).
    app = create_app(
        {
            "TESTING": True,
            "DATA_DIR": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": postgres_url,
            "REDIS_URL": None,
        }
    )
    app.test_client_class = Client
    init_migrations(app)  # as `flask db` does
    with app.app_context():
        upgrade()
        for name in ("alice", "bob"):
            db.session.add(
                User(username=name, email=f"{name}@example.com", password_hash=password_hash)
            )
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        downgrade(revision="base")
        db.engine.dispose()


@pytest.fixture(autouse=True)
def private_queue(tmp_path, monkeypatch):
    """The test process's queue is `<tmp data dir>/huey.db`: never the project's instance/
    nor a Redis that REDIS_URL (set in CI) happened to name when tasks.py was imported."""
    import tasks
    import worker

    monkeypatch.setattr(tasks.huey, "storage_class", worker.LazySqliteStorage)
    monkeypatch.setattr(
        tasks.huey,
        "storage_kwargs",
        {"filename": str(tmp_path / "huey.db"), "journal_mode": "wal", "timeout": 10},
    )
    monkeypatch.setattr(tasks.huey, "storage", tasks.huey.create_storage())
    yield tasks.huey


@pytest.fixture
def immediate():
    """Run Huey tasks inline, in the calling thread, on an in-memory queue."""
    import tasks

    tasks.huey.immediate = True
    yield tasks.huey
    tasks.huey.immediate = False


@pytest.fixture
def live(app, users, tmp_path):
    """Make a gunicorn + huey_consumer site on the `app` fixture's data dir (tests/live.py).

    The test starts the processes it needs; all are stopped afterwards.
    """
    from tests.live import LiveSite

    sites = []

    def make(redis_url=None, **env):
        site = LiveSite(tmp_path, redis_url=redis_url, **env)
        sites.append(site)
        return site

    yield make
    for site in sites:
        site.stop()


def schema_differences(connection) -> list:
    """What `flask db migrate` would change to make the database match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import search

    # The search index is created by hand (FTS5 / tsvector): hidden from autogenerate.
    context = MigrationContext.configure(
        connection, opts={"include_name": search.alembic_include_name}
    )
    return compare_metadata(context, db.metadata)


# --- federation: sites of ours on loopback addresses, and servers nobody here wrote ---------


@pytest.fixture
def federated_site(tmp_path_factory, password_hash):
    """Make a site of ours (gunicorn + huey_consumer) that federates, on a loopback `host`:
    a fresh data dir migrated as run.sh does, `users` (and `admins`) with the shared test
    password, SITE_URL its own address, http and private addresses allowed unless `strict`.
    Every connection its processes try outside 127.0.0.0/8 is refused and logged
    (tests/netguard); the file is in `site.netguard_log`."""
    from tests.live import BIN, PROJECT_DIR, LiveSite, server_env

    sites = []

    def make(host, users=("alice", "bob"), strict=False, admins=(), **env):
        data_dir = tmp_path_factory.mktemp(f"site-{host}")
        netguard_log = data_dir / "netguard.log"
        allow = "false" if strict else "true"
        settings = {
            "FEDERATION_ALLOW_HTTP": allow,
            "FEDERATION_ALLOW_PRIVATE": allow,
            "PYTHONPATH": PROJECT_DIR / "tests" / "netguard",
            "NETGUARD_LOG": netguard_log,
            **env,
        }
        if strict:  # served over plain http as a test site is, yet fenced as a public one
            settings["FEDERATION"] = "on"
        migrate = subprocess.run(
            [BIN / "flask", "--app", "microblog", "db", "upgrade"],
            cwd=PROJECT_DIR,
            env=server_env(data_dir, **settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stderr
        add_users(data_dir, users, password_hash, admins)
        site = LiveSite(data_dir, **settings)
        site.netguard_log = netguard_log
        sites.append(site)
        site.start_web(host=host, site_url=True)
        site.start_consumer()
        return site

    yield make
    for site in sites:
        site.stop()


def add_users(data_dir, usernames, password_hash, admins=()) -> None:
    """Local accounts in the database of a site on `data_dir`; those named in `admins` are
    admins."""
    from models import User

    app = create_app(
        {
            "TESTING": True,
            "DATA_DIR": str(data_dir),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{data_dir / 'app.db'}",
        }
    )
    for username in (*usernames, *admins):
        add_user(app, username, password_hash)
    with app.app_context():
        for username in admins:
            administration.make_admin(
                db.session.scalar(db.select(User).filter_by(username=username))
            )
        db.session.commit()
        db.engine.dispose()


@pytest.fixture
def bovine_peer(tmp_path):
    """Make a remote server made with bovine (tests/clients/bovine_peer.py) on a loopback
    `host`; `.command(op, …)` drives it."""
    from tests.federation_clients import ClientServer

    peers = []

    def make(host="127.0.0.5"):
        log = tmp_path / f"bovine-{host}.log"
        peer = ClientServer("bovine", "bovine_peer.py", log, host, cwd=tmp_path)
        peer.url = peer.info["url"]
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.stop()


@pytest.fixture
def our_site(federated_site):
    """A federating site of ours on 127.0.0.2 with alice and bob."""
    return federated_site("127.0.0.2")


@pytest.fixture
def remote_peer(bovine_peer):
    """A bovine server on 127.0.0.5."""
    return bovine_peer("127.0.0.5")


@pytest.fixture
def canary():
    """A listener on 127.0.0.1 that records every connection (federation_clients.Canary)."""
    from tests.federation_clients import Canary

    listener = Canary()
    yield listener
    listener.stop()


@pytest.fixture
def remote():
    """Another "server" on 127.0.0.1 answering what a test puts in its `routes`."""
    server = Remote()
    yield server
    server.server.shutdown()
    server.server.server_close()
