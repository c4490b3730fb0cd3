"""App factory, configuration, SQLite settings, migrations and error handling."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import config
from database import db
from microblog import create_app
from models import User
from tests.conftest import schema_differences

PROJECT = Path(__file__).resolve().parent.parent


def test_404_page(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "Not found" in response.get_data(as_text=True)
    assert "<nav" in response.get_data(as_text=True)


@pytest.fixture
def failing_app(app):
    """The app with a route that half-writes a user and then fails."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.route("/boom")
    def boom():
        db.session.add(User(username="half", email="half@example.com"))
        db.session.flush()
        raise RuntimeError("kaboom")

    return app


def test_500_page_rolls_back_and_logs_the_traceback(failing_app, caplog):
    client = failing_app.test_client()
    response = client.get("/boom")
    assert response.status_code == 500
    assert "Something went wrong" in response.get_data(as_text=True)
    assert "RuntimeError: kaboom" in caplog.text
    with failing_app.app_context():
        assert db.session.scalar(sa.select(User).where(User.username == "half")) is None


def test_errors_are_mailed_to_admins_in_production(failing_app, smtp_server, tmp_path):
    app = create_app(
        {
            "DATA_DIR": str(tmp_path),
            "MAIL_SERVER": smtp_server.host,
            "MAIL_PORT": smtp_server.port,
            "ADMINS": ["ops@example.com"],
            "SQLALCHEMY_DATABASE_URI": failing_app.config["SQLALCHEMY_DATABASE_URI"],
        }
    )

    @app.route("/boom")
    def boom():
        raise RuntimeError("production kaboom")

    assert app.test_client().get("/boom").status_code == 500
    [message] = smtp_server.messages
    assert message["To"] == "ops@example.com"
    assert message["Subject"] == "Microblog failure"
    assert "production kaboom" in message.get_content()


def test_no_error_mail_without_admins(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "MAIL_SERVER": "127.0.0.1"})
    assert not any(h.__class__.__name__ == "SMTPHandler" for h in app.logger.handlers)


def test_csrf_failure_is_a_friendly_400(client, auth):
    auth.login()
    response = client.post("/follow/bob")
    assert response.status_code == 400
    assert "Your form expired" in response.get_data(as_text=True)


def test_bootstrap_is_served_by_the_app_itself(client, auth):
    auth.login()
    html = client.get("/index").get_data(as_text=True)
    assert "cdn." not in html
    for asset, marker in [
        ("css/bootstrap.min.css", b".navbar"),
        ("js/bootstrap.min.js", b"Popover"),
        ("umd/popper.min.js", b"createPopper"),
    ]:
        url = f"/bootstrap/static/{asset}"
        assert url in html
        with client.get(url) as response:
            assert response.status_code == 200
            assert marker in response.data


# --- configuration ------------------------------------------------------------------


def test_secret_key_is_generated_once_and_kept_private(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    first = create_app({"DATA_DIR": str(tmp_path)})
    second = create_app({"DATA_DIR": str(tmp_path)})
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert len(first.config["SECRET_KEY"]) == 64
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (
        create_app({"DATA_DIR": str(tmp_path / "other")}).config["SECRET_KEY"]
        != first.config["SECRET_KEY"]
    )


def test_secret_key_from_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "from-env")
    assert create_app({"DATA_DIR": str(tmp_path)}).config["SECRET_KEY"] == "from-env"
    assert not (tmp_path / "secret_key").exists()


def test_processes_starting_together_agree_on_the_secret_key(tmp_path):
    env = {**os.environ, "MICROBLOG_DATA_DIR": str(tmp_path)}
    env.pop("SECRET_KEY", None)
    code = "import config; print(config.from_environment()['SECRET_KEY'])"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=PROJECT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in processes}
    assert len(keys) == 1
    assert keys == {(tmp_path / "secret_key").read_text().strip()}


def test_configuration_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROBLOG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POSTS_PER_PAGE", "7")
    monkeypatch.setenv("ADMINS", "a@example.com, b@example.com")
    monkeypatch.setenv("MAIL_USE_TLS", "true")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = config.from_environment()
    assert settings["DATA_DIR"] == str(tmp_path)
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'app.db'}"
    assert settings["POSTS_PER_PAGE"] == 7
    assert settings["ADMINS"] == ["a@example.com", "b@example.com"]
    assert settings["MAIL_USE_TLS"] is True
    assert settings["MAIL_SERVER"] is None


def test_default_data_dir_is_beside_the_code_whatever_the_cwd(monkeypatch, tmp_path):
    monkeypatch.delenv("MICROBLOG_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.data_dir() == PROJECT / "instance"


def test_dotenv_file_is_read_by_any_process(tmp_path):
    """Both the web app and the worker import config, which loads <project>/.env."""
    env_file = PROJECT / ".env"
    if env_file.exists():
        pytest.skip("a real .env exists in the project; not overwriting it")
    env_file.write_text(f"POSTS_PER_PAGE=11\nMICROBLOG_DATA_DIR={tmp_path}\n")
    try:
        env = {
            k: v for k, v in os.environ.items() if k not in ("POSTS_PER_PAGE", "MICROBLOG_DATA_DIR")
        }
        env["PYTHONPATH"] = str(PROJECT)
        code = "import config; s = config.from_environment(); print(s['POSTS_PER_PAGE'])"
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd="/",
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    finally:
        env_file.unlink()
    assert out == ["11"]


# --- SQLite and migrations ------------------------------------------------------------


def test_sqlite_connections_are_tuned(app):
    with app.app_context():
        connection = db.session.connection()
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("busy_timeout") >= 5000
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 1  # NORMAL


def test_database_files_are_private(app, tmp_path):
    assert stat.S_IMODE((tmp_path / "app.db").stat().st_mode) == 0o600


def test_migrations_build_exactly_the_models(tmp_path):
    """`flask db upgrade` (what run.sh does) creates the schema the models describe."""
    from flask_migrate import upgrade

    from schema_migrations import init_migrations

    app = create_app(
        {
            "DATA_DIR": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'migrated.db'}",
        }
    )
    init_migrations(app)  # as `flask db` does
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            differences = schema_differences(connection)
    assert differences == []


def test_trusted_hosts_refuse_forged_host_headers(tmp_path, monkeypatch):
    """A forged Host header must not end up in password-reset links."""
    monkeypatch.setenv("TRUSTED_HOSTS", "microblog.example.com")
    app = create_app({"DATA_DIR": str(tmp_path)})
    client = app.test_client()
    assert client.get("/login", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/login", headers={"Host": "microblog.example.com"}).status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "status", "text"),
    [
        ("GET", "/user/nobody", 404, "Not found"),
        ("DELETE", "/index", 405, "does not accept that kind of request"),
        ("GET", "/logout", 405, "does not accept that kind of request"),
    ],
)
def test_error_pages_share_one_template(client, auth, method, url, status, text):
    auth.login()
    response = client.open(url, method=method)
    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert text in html and 'class="error-reason"' in html


def test_too_large_request_gets_the_error_page(client, auth, app):
    auth.login()
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.submit("/index", {"post": "x" * 5000})
    assert response.status_code == 413
    assert "The request is too large." in response.get_data(as_text=True)


def test_signed_in_json_client_gets_json_404(client, auth):
    auth.login()
    response = client.get("/user/nobody", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json["error"] == "Not Found"


@pytest.mark.parametrize("url", ["/login", "/register", "/reset_password_request"])
def test_signed_in_users_go_home_from_visitor_pages(client, auth, url):
    auth.login()
    response = client.get(url)
    assert response.status_code == 302 and response.headers["Location"] == "/index"


def open_files(pid: int) -> set[str]:
    """The paths of the files a process has open."""
    paths = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            paths.add(os.readlink(fd))
        except OSError:  # closed meanwhile
            pass
    return paths


def test_gunicorn_workers_share_the_preloaded_app_but_not_its_connections(app, users, live):
    """gunicorn makes the app once, in its master (gunicorn.conf.py); each worker then opens
    database connections of its own, and requests in both, at once, all succeed."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.bench_federation import children
    from tests.live import Browser, wait_for

    site = live()
    site.start_web(workers=2)
    master = site.web.pid
    workers = wait_for(lambda: len(children(master)) == 2 and children(master))
    # Preloaded: the master has the app's libraries loaded (and so the workers' copies are
    # its pages, shared), yet it opened no database.
    assert "_sqlite3" in Path(f"/proc/{master}/maps").read_text()
    database = str(site.data_dir / "app.db")

    statuses = []

    def ask(_number):
        return Browser(site.url).get("/readyz")[0]  # it reads the database

    def both_served():
        with ThreadPoolExecutor(8) as pool:
            statuses.extend(pool.map(ask, range(50)))
        return all(database in open_files(worker) for worker in workers)

    wait_for(both_served, what="both workers to open the database")
    assert set(statuses) == {503}  # no consumer runs; nothing failed
    assert database not in open_files(master)
    assert site.query("PRAGMA integrity_check") == [("ok",)]


def test_the_supervised_parent_shares_the_app_but_opens_no_database(app, users, live):
    """supervise.py (what ./run.sh starts) makes the app once and forks the web server and the
    consumer from it: both use the database and the queue, the parent opened neither, nor a
    socket besides the one it was handed to serve (nothing crosses a fork)."""
    from tests.live import Browser, child_named, children, wait_for

    site = live()
    site.start_all(workers=1)
    parent = site.web.pid
    web = wait_for(lambda: child_named(parent, "gunicorn"))
    web_worker = wait_for(lambda: next(iter(children(web)), None))
    consumer = site.consumer_pid()
    assert consumer is not None and set(children(parent)) == {web, consumer}
    # Preloaded: the parent has the app's libraries loaded, the children its pages.
    assert "_sqlite3" in Path(f"/proc/{parent}/maps").read_text()
    database, queue = str(site.data_dir / "app.db"), str(site.data_dir / "huey.db")

    def all_opened():
        Browser(site.url).get("/readyz")  # the web worker reads the database
        return database in open_files(web_worker) and {database, queue} <= open_files(consumer)

    wait_for(all_opened, what="the web worker and the consumer to open the databases")
    opened = open_files(parent)
    assert database not in opened and queue not in opened
    # Its one socket is gunicorn's (no doorbell, no connection to anything).
    assert len([path for path in opened if path.startswith("socket:")]) == 1
    assert site.query("PRAGMA integrity_check") == [("ok",)]


def test_a_worker_told_to_stop_as_it_starts_stops(tmp_path):
    """gunicorn.conf.py: a worker forked a moment ago still has the master's signal handlers,
    which would only queue a stop for the master's loop; from the fork on, a stop ends it."""
    import runpy
    import signal
    from types import SimpleNamespace

    hooks = runpy.run_path(str(config.PROJECT_DIR / "gunicorn.conf.py"))
    stops = hooks["STOP_SIGNALS"]
    assert signal.SIGTERM in stops
    before = {stop: signal.getsignal(stop) for stop in stops}
    server = SimpleNamespace(SIG_QUEUE=[signal.SIGTERM], cfg=SimpleNamespace(preload_app=True))
    try:
        with pytest.raises(SystemExit):  # the stop came even before the hook ran
            hooks["post_fork"](server, None)
        assert all(signal.getsignal(stop) == signal.SIG_DFL for stop in stops)
    finally:
        for stop, handler in before.items():
            signal.signal(stop, handler)
