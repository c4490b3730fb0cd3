"""config.py: every setting declared once, parsed once, invalid values refused at start."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import config
from database import db
from microblog import create_app

PROJECT = Path(__file__).resolve().parent.parent


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter in the project, on `tmp_path` as its data dir."""
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    environ.update(MICROBLOG_DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- defaults and the environment ----------------------------------------------------------


def test_defaults_when_the_environment_is_empty():
    settings = config.load({})
    assert settings["DATA_DIR"] == PROJECT / "instance"
    assert settings["SQLALCHEMY_DATABASE_URI"] is None  # SQLite in the data dir
    assert settings["POSTS_PER_PAGE"] == 25
    assert settings["MAIL_USE_TLS"] is False
    assert settings["ADMINS"] == []
    assert settings["TRUSTED_HOSTS"] is None
    assert settings["API_TOKEN_LIMIT_PER_USER"] == 10
    assert settings["HUEY_NAME"] == "microblog"
    assert settings["MICROBLOG_EXPORT_BATCH_SIZE"] == 5000
    assert settings["MICROBLOG_MAIL_RETRY_DELAY"] == 30


def test_empty_variables_mean_unset():
    assert config.load({"MAIL_SERVER": "", "POSTS_PER_PAGE": " "}) == config.load({})


def test_values_are_parsed():
    settings = config.load(
        {
            "POSTS_PER_PAGE": "7",
            "MAIL_USE_SSL": "yes",
            "TRUSTED_HOSTS": "a.example, b.example",
            "API_TOKEN_LIMIT_WINDOW": "60",
            "MICROBLOG_TASK_STALE_SECONDS": "2.5",
            "MICROBLOG_MAIL_RETRIES": "0",
        }
    )
    assert settings["POSTS_PER_PAGE"] == 7
    assert settings["MAIL_USE_SSL"] is True
    assert settings["TRUSTED_HOSTS"] == ["a.example", "b.example"]
    assert settings["API_TOKEN_LIMIT_WINDOW"] == 60
    assert settings["MICROBLOG_TASK_STALE_SECONDS"] == 2.5
    assert settings["MICROBLOG_MAIL_RETRIES"] == 0


def test_the_app_gets_every_setting_and_tests_override_them(tmp_path, monkeypatch):
    monkeypatch.setenv("API_TOKEN_LIMIT_PER_IP", "5")
    monkeypatch.setenv("POSTS_PER_PAGE", "9")
    app = create_app({"DATA_DIR": str(tmp_path), "POSTS_PER_PAGE": 2})
    assert app.config["API_TOKEN_LIMIT_PER_IP"] == 5
    assert app.config["POSTS_PER_PAGE"] == 2
    assert app.config["RATE_LIMIT_PREFIX"] == "microblog:ratelimit:"  # HUEY_NAME's default
    for name in config.load():
        assert name in app.config


def test_every_setting_is_documented_once_in_the_readme():
    rows = [line for line in (PROJECT / "README.md").read_text().splitlines() if line[:1] == "|"]
    for setting in config.SETTINGS:
        documented = [row for row in rows if f"`{setting.env}`" in row]
        assert len(documented) == 1, f"{setting.env} is in {len(documented)} README table rows"


# --- DATABASE_URL ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # What Heroku, Render and others hand out; SQLAlchemy alone rejects the name.
        ("postgres://u:p@db.example:5432/blog", "postgresql+psycopg://u:p@db.example:5432/blog"),
        # No driver: SQLAlchemy would pick psycopg2, which is not installed.
        ("postgresql://u@db.example/blog", "postgresql+psycopg://u@db.example/blog"),
        ("POSTGRES://u@h/blog?sslmode=require", "postgresql+psycopg://u@h/blog?sslmode=require"),
        # An explicit driver, or another database, is left as it is.
        ("postgresql+psycopg://u@h/blog", "postgresql+psycopg://u@h/blog"),
        ("postgresql+psycopg2://u@h/blog", "postgresql+psycopg2://u@h/blog"),
        ("sqlite:////var/lib/microblog/app.db", "sqlite:////var/lib/microblog/app.db"),
    ],
)
def test_database_url_spellings(given, expected):
    assert config.database_url(given) == expected
    assert config.load({"DATABASE_URL": given})["SQLALCHEMY_DATABASE_URI"] == expected


def test_postgres_url_reaches_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db.example/blog")
    app = create_app({"DATA_DIR": str(tmp_path)})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db.example/blog"


def test_an_invalid_database_url_is_named_but_not_repeated():
    with pytest.raises(config.ConfigError) as error:
        config.load({"DATABASE_URL": "secret-password-not-a-url"})
    assert "DATABASE_URL" in str(error.value)
    assert "secret-password" not in str(error.value)


def test_postgres_scheme_connects(tmp_path, monkeypatch):
    """`postgres://…`, as a hosting provider gives it, really connects through psycopg 3."""
    base_url = os.environ.get("TEST_DATABASE_URL")
    if not base_url:
        pytest.skip("TEST_DATABASE_URL is not set; no PostgreSQL server to connect to")
    url = sa.make_url(base_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("TEST_DATABASE_URL is not a PostgreSQL URL")
    rest = url.render_as_string(hide_password=False).split("://", 1)[1]
    monkeypatch.setenv("DATABASE_URL", f"postgres://{rest}")
    app = create_app({"DATA_DIR": str(tmp_path)})
    with app.app_context():
        try:
            assert db.engine.dialect.driver == "psycopg"
            assert db.session.scalar(sa.text("SELECT 1")) == 1
        finally:
            db.session.remove()
            db.engine.dispose()


# --- invalid values stop the process at start, naming the variable ---------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POSTS_PER_PAGE", "abc"),
        ("POSTS_PER_PAGE", "0"),
        ("MAIL_PORT", "smtp"),
        ("MAIL_USE_TLS", "maybe"),
        ("API_TOKEN_LIMIT_WINDOW", "5m"),
        ("MICROBLOG_TASK_STALE_SECONDS", "nan"),
        ("MICROBLOG_PERIODIC_SECONDS", "0"),
        ("MICROBLOG_EXPORT_BATCH_SIZE", "1.5"),
        ("REDIS_URL", "127.0.0.1:6379"),
        ("ADMINS", ","),
    ],
)
def test_invalid_values_are_refused_by_name(name, value):
    with pytest.raises(config.ConfigError, match=re.escape(name)):
        config.load({name: value})


def test_every_invalid_variable_is_reported_at_once():
    with pytest.raises(config.ConfigError) as error:
        config.load({"POSTS_PER_PAGE": "abc", "MAIL_PORT": "x"})
    assert "POSTS_PER_PAGE='abc'" in str(error.value)
    assert "MAIL_PORT='x'" in str(error.value)


def test_create_app_refuses_an_invalid_value(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTS_PER_PAGE", "abc")
    with pytest.raises(config.ConfigError, match="POSTS_PER_PAGE='abc': expected a whole number"):
        create_app({"DATA_DIR": str(tmp_path)})


def test_config_check_prints_one_line_not_a_traceback(tmp_path):
    """What `./run.sh` runs before starting anything."""
    environ = {**os.environ, "POSTS_PER_PAGE": "abc"}
    result = subprocess.run(
        [sys.executable, "config.py"], cwd=PROJECT, env=environ, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "POSTS_PER_PAGE='abc': expected a whole number" in result.stderr


def test_the_worker_refuses_an_invalid_value(tmp_path):
    result = run_python("import tasks", tmp_path, MICROBLOG_EXPORT_BATCH_SIZE="lots")
    assert result.returncode != 0
    assert "ConfigError" in result.stderr
    assert "MICROBLOG_EXPORT_BATCH_SIZE='lots'" in result.stderr


def test_the_worker_reads_its_settings_from_config(tmp_path):
    code = (
        "import tasks, worker; print(worker.settings['MICROBLOG_EXPORT_BATCH_SIZE'], "
        "tasks.MAIL_RETRY_DELAY, worker.HUEY_NAME)"
    )
    result = run_python(
        code,
        tmp_path,
        MICROBLOG_EXPORT_BATCH_SIZE="70",
        MICROBLOG_MAIL_RETRY_DELAY="1.5",
        HUEY_NAME="q",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["70", "1.5", "q"]


# --- no side effects in getters; files stay private --------------------------------------------


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_reading_settings_changes_nothing(tmp_path):
    before = os.umask(0o022)
    try:
        config.load({"MICROBLOG_DATA_DIR": str(tmp_path / "data")})
        assert not (tmp_path / "data").exists()
        config.data_dir(tmp_path / "data")
        assert (tmp_path / "data").is_dir()
        assert current_umask() == 0o022
    finally:
        os.umask(before)


def test_importing_the_worker_creates_nothing(tmp_path):
    code = "import os; os.umask(0o022); import tasks; print(oct(os.umask(0o022)))"
    result = run_python(code, tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0o22"
    assert not (tmp_path / "data").exists()


def test_the_consumer_creates_private_files(tmp_path):
    """The consumer may open huey.db before any app exists: it sets the umask itself."""
    code = (
        "import os; os.umask(0o022)\n"
        "import tasks\n"
        "tasks.huey.create_consumer(workers=1, worker_type='thread')\n"
        "tasks.huey.put('probe', 1)\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "huey.db").stat().st_mode) == 0o600


def test_the_app_creates_private_files(tmp_path):
    code = (
        "import os; os.umask(0o022)\n"
        "from microblog import create_app\n"
        "from models import db\n"
        "app = create_app()\n"
        "with app.app_context(): db.create_all()\n"
    )
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("app.db", "secret_key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


@pytest.mark.parametrize("app_config", [{"MICROBLOG_AVATAR_MAX_BYTES": 1000}])
def test_an_override_given_to_create_app_reaches_the_worker_code(app):
    """Task bodies read the app's config when they run, not values the worker module read
    from the environment when it was imported."""
    import avatars
    import tasks

    with app.app_context(), pytest.raises(avatars.AvatarTooLarge):
        tasks.check_avatar(b"\x89PNG" + b"\0" * 2000)


def test_only_a_database_server_has_its_connections_tested_before_use(app):
    assert config.engine_options("sqlite:////data/app.db") == {}
    assert config.engine_options("postgresql+psycopg://db/microblog") == {"pool_pre_ping": True}
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {}  # the tests' SQLite
