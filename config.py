"""Configuration shared by the web app and the Huey consumer: every setting, parsed once.

Each setting is declared once, in `SETTINGS`, with its default and its parser. They are
layered as in Flask's tutorial: defaults, then the environment (and the optional `.env`
file), then, in `create_app(config)`, the test overrides. Both processes import this
module, so both read the same environment, the same `.env` and the same data directory.

- `load()` parses the environment and returns every setting; it only reads. The consumer
  (tasks.py) calls it once at import, because Huey's decorators need values then.
- `from_environment()` is the web app's mapping: `load()` plus the fixed Flask settings and
  what comes from the data directory (the generated secret key, the SQLite database).

An invalid value stops the process at start with a `ConfigError` naming the variable.
"""

import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dotenv import load_dotenv

PROJECT_DIR = Path(__file__).resolve().parent

# Loaded explicitly (not via Flask's CLI) so that `huey_consumer tasks.huey` sees it too.
load_dotenv(PROJECT_DIR / ".env")


class ConfigError(Exception):
    """One or more settings in the environment (or `.env`) have an invalid value."""


# --- parsers: text from the environment → value, or ValueError saying what was expected ----


def text(value: str) -> str:
    return value


def boolean(value: str) -> bool:
    word = value.strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false (1/0, yes/no, on/off)")


def integer(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if number < minimum:
            raise ValueError(f"expected a whole number ≥ {minimum}")
        return number

    return parse


def number(minimum: float, *, strict: bool = False) -> Callable[[str], float]:
    """A finite number ≥ `minimum` (> `minimum` when `strict`)."""

    def parse(value: str) -> float:
        try:
            result = float(value.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(result) or result < minimum or (strict and result == minimum):
            raise ValueError(f"expected a number {'>' if strict else '≥'} {minimum:g}")
        return result

    return parse


def one_of(*words: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        word = value.strip().lower()
        if word not in words:
            raise ValueError(f"expected one of: {', '.join(words)}")
        return word

    return parse


def comma_list(value: str) -> list[str]:
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ValueError("expected a comma-separated list")
    return items


def directory_path(value: str) -> Path:
    return Path(value)


def database_url(value: str) -> str:
    """A SQLAlchemy URL. `postgres://` (what hosting providers hand out, which SQLAlchemy
    rejects) and `postgresql://` without a driver (which SQLAlchemy maps to psycopg2, not
    installed) both mean PostgreSQL through psycopg 3, the installed driver."""
    value = value.strip()
    scheme, separator, rest = value.partition("://")
    if separator and scheme.lower() in {"postgres", "postgresql"}:
        value = f"postgresql+psycopg://{rest}"
    try:
        sa.make_url(value)
    except sa.exc.ArgumentError:
        raise ValueError("expected a database URL such as postgresql://user@host/db") from None
    return value


def base_url(example: str) -> Callable[[str], str]:
    """An http(s) base URL without query or fragment, kept without a trailing slash."""

    def parse(value: str) -> str:
        value = value.strip().rstrip("/")
        scheme, separator, rest = value.partition("://")
        if (
            scheme not in {"http", "https"}
            or not separator
            or not rest
            or "?" in rest
            or "#" in rest
        ):
            raise ValueError(f"expected a URL such as {example}")
        return value

    return parse


# The public base URL (`https://microblog.example.org`).
site_url = base_url("https://microblog.example.org")


def redis_url(value: str) -> str:
    value = value.strip()
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a URL such as redis://127.0.0.1:6379/0")
    return value


# --- every setting ---------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    env: str  # the environment variable
    default: Any  # used when the variable is unset or empty
    parse: Callable[[str], Any] = text
    key: str = ""  # the key in the settings (Flask's app.config): `env` unless given
    secret: bool = False  # never repeat the value in an error message

    @property
    def name(self) -> str:
        return self.key or self.env


SETTINGS = (
    # Where app.db, huey.db, exports/ and the generated secret key live.
    Setting("MICROBLOG_DATA_DIR", PROJECT_DIR / "instance", directory_path, key="DATA_DIR"),
    # None: generated once and kept in the data dir (from_environment).
    Setting("SECRET_KEY", None, secret=True),
    # None: SQLite in the data dir (from_environment).
    Setting("DATABASE_URL", None, database_url, key="SQLALCHEMY_DATABASE_URI", secret=True),
    # Set: the task queue and the rate limits use Redis instead of SQLite.
    Setting("REDIS_URL", None, redis_url, secret=True),
    # Unset MAIL_SERVER: emails are logged, not sent.
    Setting("MAIL_SERVER", None),
    Setting("MAIL_PORT", 25, integer(1)),
    Setting("MAIL_USE_TLS", False, boolean),
    Setting("MAIL_USE_SSL", False, boolean),
    Setting("MAIL_USERNAME", None),
    Setting("MAIL_PASSWORD", None, secret=True),
    Setting("MAIL_DEFAULT_SENDER", "microblog@localhost"),
    # Addresses that receive error reports (when mail is configured).
    Setting("ADMINS", [], comma_list),
    Setting("POSTS_PER_PAGE", 25, integer(1)),
    # The host names the site answers to (others get 400).
    Setting("TRUSTED_HOSTS", None, comma_list),
    # The public base URL of every link in a mail (never the request's Host header); an
    # https URL also makes the cookies Secure. run.sh derives one from HOST and PORT.
    Setting("SITE_URL", "http://127.0.0.1:5000", site_url),
    # How many proxies in front (nginx: 1) may say who the client is (X-Forwarded-For/-Proto).
    Setting("TRUSTED_PROXIES", 0, integer(0)),
    # The web server (web_server.py) closes a connection whose request head has not all
    # arrived this many seconds after its first byte, or whose body then arrives at fewer
    # than WEB_MIN_UPLOAD_RATE bytes a second on average: a slow client cannot hold it open.
    Setting("WEB_HEAD_TIMEOUT", 10.0, number(0, strict=True)),
    Setting("WEB_MIN_UPLOAD_RATE", 1024, integer(1)),
    # Token requests (HTTP Basic) allowed per window, per client IP and per (client IP, username).
    Setting("API_TOKEN_LIMIT_PER_IP", 30, integer(1)),
    Setting("API_TOKEN_LIMIT_PER_USER", 10, integer(1)),
    Setting("API_TOKEN_LIMIT_WINDOW", 300, integer(1)),  # seconds
    # Web sign-in attempts (and current-password checks) the same way.
    Setting("SIGN_IN_LIMIT_PER_IP", 30, integer(1)),
    Setting("SIGN_IN_LIMIT_PER_USER", 10, integer(1)),
    Setting("SIGN_IN_LIMIT_WINDOW", 300, integer(1)),  # seconds
    # Password-reset mails per e-mail address and requests per client IP, per window.
    Setting("RESET_LIMIT_PER_ADDRESS", 3, integer(1)),
    Setting("RESET_LIMIT_PER_IP", 10, integer(1)),
    Setting("RESET_LIMIT_WINDOW", 3600, integer(1)),  # seconds
    # New accounts (web and API) per client IP, per window.
    Setting("REGISTER_LIMIT_PER_IP", 5, integer(1)),
    Setting("REGISTER_LIMIT_WINDOW", 3600, integer(1)),  # seconds
    # Mastodon apps registered (POST /api/v1/apps) per client address.
    Setting("APP_REGISTRATION_LIMIT_PER_IP", 30, integer(1)),
    Setting("APP_REGISTRATION_LIMIT_WINDOW", 3600, integer(1)),  # seconds
    # How often open pages ask for notifications (ms): idle, and while a task is moving.
    Setting("MICROBLOG_POLL_IDLE_MS", 10000, integer(100), key="NOTIFICATIONS_POLL_IDLE_MS"),
    Setting("MICROBLOG_POLL_BUSY_MS", 1000, integer(100), key="NOTIFICATIONS_POLL_BUSY_MS"),
    # open: anyone may register (the form, POST /api/users); closed: only admins create
    # accounts (`flask user create`, /admin).
    Setting("MICROBLOG_REGISTRATION", "open", one_of("open", "closed")),
    # How often an open /admin/jobs page refreshes itself (ms).
    Setting("MICROBLOG_ADMIN_REFRESH_MS", 5000, integer(100)),
    # --- background tasks (tasks.py); tests shorten the intervals ---
    Setting("HUEY_NAME", "microblog"),  # the queue's name
    # How often the periodic tasks (reaper, export cleanup) run; Huey's own default is 60 s.
    Setting("MICROBLOG_PERIODIC_SECONDS", 60.0, number(0, strict=True)),
    # A running task whose heartbeat is older than this is declared lost by the reaper.
    Setting("MICROBLOG_TASK_STALE_SECONDS", 120.0, number(0, strict=True)),
    # Finished exports kept per user: older files are deleted when a new export finishes.
    Setting("MICROBLOG_EXPORT_KEEP", 3, integer(1)),
    # Posts read and written per batch of an export.
    Setting("MICROBLOG_EXPORT_BATCH_SIZE", 5000, integer(1)),
    # The largest file /import (and POST /api/tasks) takes: a Mastodon archive holds every
    # media file too. Every other request stays under MAX_CONTENT_LENGTH.
    Setting("MICROBLOG_IMPORT_MAX_BYTES", 2 * 1024**3, integer(1)),
    # The largest picture /edit_profile takes as an avatar.
    Setting("MICROBLOG_AVATAR_MAX_BYTES", 5 * 1024 * 1024, integer(1)),
    # Without an uploaded picture: Gravatar's (which sends each visitor's browser to
    # gravatar.com with a hash of the author's e-mail), else one generated here.
    Setting("MICROBLOG_GRAVATAR", False, boolean),
    # Posts added per transaction by an import.
    Setting("MICROBLOG_IMPORT_BATCH_SIZE", 5000, integer(1)),
    # Exports are deleted this many days after they finish; a failed import's upload, kept
    # for a retry, this many days after it failed.
    Setting("MICROBLOG_EXPORT_EXPIRY_DAYS", 7.0, number(0)),
    # Larger exports are mailed as a link to the download page instead of an attachment.
    Setting("MICROBLOG_EXPORT_ATTACH_MAX_BYTES", 5 * 1024 * 1024, integer(0)),
    # SMTP failures while mailing an export are retried this often, this many seconds apart.
    Setting("MICROBLOG_MAIL_RETRIES", 3, integer(0)),
    Setting("MICROBLOG_MAIL_RETRY_DELAY", 30.0, number(0)),
    # Each consumer records that it is alive this often (s). One silent for
    # MICROBLOG_CONSUMER_SILENT_SECONDS is dead: a live one puts the tasks it was running back
    # in the queue, and with none alive the pages and /readyz report "no worker".
    Setting("MICROBLOG_CONSUMER_HEARTBEAT_SECONDS", 5.0, number(0, strict=True)),
    Setting("MICROBLOG_CONSUMER_SILENT_SECONDS", 15.0, number(0, strict=True)),
    # The consumer's daily backup of the SQLite database keeps this many (0: no daily backup).
    Setting("MICROBLOG_BACKUP_KEEP", 7, integer(0)),
    # --- federation (ActivityPub) ---
    # on: other servers can find, follow and read this site's users, and they theirs.
    # Unset: on when SITE_URL is https:// (or FEDERATION_ALLOW_HTTP); off: no endpoints, no
    # deliveries, no fetches.
    Setting("FEDERATION", None, boolean),
    # Tests and local experiments only: let outgoing requests use plain http, and reach
    # loopback, private, link-local and reserved addresses (refused otherwise, so that a
    # remote server cannot make this one fetch from its own network).
    Setting("FEDERATION_ALLOW_HTTP", False, boolean),
    Setting("FEDERATION_ALLOW_PRIVATE", False, boolean),
    # on: fetching an actor, an outbox, a collection or a post needs a signed request
    # (GoToSocial always does this); off: anyone may read what is public anyway.
    Setting("FEDERATION_AUTHORIZED_FETCH", False, boolean),
    # Seconds to connect and for each read of an outgoing request, and the largest answer
    # read from another server.
    Setting("FEDERATION_FETCH_TIMEOUT", 5.0, number(0, strict=True)),
    Setting("FEDERATION_FETCH_MAX_BYTES", 1024 * 1024, integer(1024)),
    # Searches for accounts on other servers (@name@host, a URL) per user, per window.
    Setting("FEDERATION_LOOKUP_LIMIT_PER_USER", 30, integer(1)),
    Setting("FEDERATION_LOOKUP_LIMIT_WINDOW", 300, integer(1)),  # seconds
    # --- live translation of posts ---
    # A LibreTranslate-compatible server; unset: no "Translate" link anywhere.
    Setting("TRANSLATE_URL", None, base_url("http://127.0.0.1:5001")),
    Setting("TRANSLATE_API_KEY", None, secret=True),  # sent as `api_key` when set
    # Seconds for the whole exchange with the server (connecting, sending, reading all of
    # its answer) before telling the reader it is too slow.
    Setting("TRANSLATE_TIMEOUT", 10.0, number(0, strict=True)),
    # Translations per signed-in user and per client address, per window.
    Setting("TRANSLATE_LIMIT_PER_USER", 60, integer(1)),
    Setting("TRANSLATE_LIMIT_PER_IP", 200, integer(1)),
    Setting("TRANSLATE_LIMIT_WINDOW", 3600, integer(1)),  # seconds
    # --- deliveries to other servers (deliveries.py); tests shrink the durations ---
    # Requests one consumer keeps in flight at once (one event loop, not a thread each).
    Setting("FEDERATION_DELIVERY_CONCURRENCY", 64, integer(1)),
    # Deliveries one task claims before it gives its worker thread back to the queue.
    Setting("FEDERATION_DELIVERY_BATCH", 500, integer(1)),
    # Seconds to connect, and for a whole request (connect, send, answer) to another server.
    Setting("FEDERATION_CONNECT_TIMEOUT", 3.0, number(0, strict=True)),
    Setting("FEDERATION_REQUEST_TIMEOUT", 10.0, number(0, strict=True)),
    # A failed delivery is tried again after this many seconds, doubling each time up to
    # FEDERATION_RETRY_MAX_SECONDS, for FEDERATION_RETRY_FOR_SECONDS (two days) in all.
    Setting("FEDERATION_RETRY_BASE_SECONDS", 60.0, number(0, strict=True)),
    Setting("FEDERATION_RETRY_MAX_SECONDS", 6 * 3600.0, number(0, strict=True)),
    Setting("FEDERATION_RETRY_FOR_SECONDS", 2 * 86400.0, number(0, strict=True)),
    # The longest wait a server's Retry-After may ask of us (longer answers are cut to it).
    Setting("FEDERATION_RETRY_AFTER_MAX_SECONDS", 3600.0, number(0)),
    # After this many failures in a row a server is paused for FEDERATION_PAUSE_SECONDS
    # (doubling while its probes fail); paused and failing for FEDERATION_DEAD_AFTER_SECONDS
    # (a week), its deliveries are dropped.
    Setting("FEDERATION_BREAKER_FAILURES", 3, integer(1)),
    Setting("FEDERATION_PAUSE_SECONDS", 300.0, number(0, strict=True)),
    Setting("FEDERATION_DEAD_AFTER_SECONDS", 7 * 86400.0, number(0, strict=True)),
    # Activities one server may post to our inboxes per window, from each of its addresses.
    Setting("FEDERATION_INBOX_LIMIT_PER_HOST", 3000, integer(1)),
    Setting("FEDERATION_INBOX_LIMIT_WINDOW", 300, integer(1)),  # seconds
    # While more received activities than this wait for the worker, the inbox answers 503
    # with a Retry-After: senders come back later instead of the backlog growing unbounded.
    Setting("FEDERATION_INBOX_BACKLOG_MAX", 2000, integer(1)),
    # A received activity whose applying failed for a reason that may pass is tried again
    # after this many seconds, then at doubling ages, until it is two days old
    # (FEDERATION_RETRY_FOR_SECONDS).
    Setting("FEDERATION_INBOX_RETRY_SECONDS", 300.0, number(0, strict=True)),
)


def default(name: str) -> Any:
    """The declared default of setting `name`, for code that takes it as an argument's
    default (so that no default is written twice)."""
    return next(setting.default for setting in SETTINGS if setting.name == name)


def federation_enabled(settings: Mapping[str, Any]) -> bool:
    """FEDERATION as set, or, when unset, whether the site is public over https (or plain
    http is allowed for tests): a site on http://localhost has no name others can reach."""
    if settings.get("FEDERATION") is not None:
        return bool(settings["FEDERATION"])
    site = str(settings.get("SITE_URL", ""))
    return site.startswith("https://") or bool(settings.get("FEDERATION_ALLOW_HTTP"))


def flask_settings() -> dict[str, Any]:
    """Fixed settings of Flask and its extensions (not read from the environment)."""
    return {
        "BOOTSTRAP_SERVE_LOCAL": True,  # no CDN: the site must work offline
        "WTF_CSRF_TIME_LIMIT": None,  # tokens live as long as the session
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # Whether mail goes out is decided by MAIL_SERVER alone, in tests too (they run a
        # real server).
        "MAIL_SUPPRESS_SEND": False,
        # A cross-site POST carries no cookie; a link from elsewhere still signs you in.
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SAMESITE": "Lax",
    }


def engine_options(database_uri: str) -> dict[str, Any]:
    """A database server's connections are tested before each use (it may have closed them
    since); a SQLite file's cannot go stale, and the test would cost every request a query."""
    return {} if database_uri.startswith("sqlite") else {"pool_pre_ping": True}


def cookie_security(site: str) -> dict[str, Any]:
    """Cookies only over https when the site is served over https."""
    secure = site.startswith("https://")
    return {"SESSION_COOKIE_SECURE": secure, "REMEMBER_COOKIE_SECURE": secure}


def load(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting: its default, or its parsed value from `environ` (os.environ).

    Only reads: creates no file or directory. Raises ConfigError naming every variable
    whose value is invalid.
    """
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {}
    errors = []
    for setting in SETTINGS:
        raw = environ.get(setting.env, "")
        if not raw.strip():
            settings[setting.name] = setting.default
            continue
        try:
            settings[setting.name] = setting.parse(raw)
        except ValueError as exc:
            shown = "" if setting.secret else f"={raw!r}"
            errors.append(f"{setting.env}{shown}: {exc}")
    if errors:
        raise ConfigError("invalid configuration (environment or .env): " + "; ".join(errors))
    return settings


def from_environment(directory: Path | None = None) -> dict[str, Any]:
    """The web app's configuration: fixed Flask settings, then `load()`, then what the data
    directory provides (created if needed): the secret key and the SQLite database.

    `directory` overrides MICROBLOG_DATA_DIR (tests use a temporary one).
    """
    settings = {**flask_settings(), **load()}
    # Redis keys of the rate limits carry the queue's name: sites sharing one Redis (or the
    # test runs of one machine) keep separate counts, as they keep separate queues.
    settings["RATE_LIMIT_PREFIX"] = f"{settings['HUEY_NAME']}:ratelimit:"
    directory = data_dir(directory or settings["DATA_DIR"])
    settings["DATA_DIR"] = str(directory)
    settings["SECRET_KEY"] = settings["SECRET_KEY"] or read_or_create_secret_key(directory)
    settings["SQLALCHEMY_DATABASE_URI"] = (
        settings["SQLALCHEMY_DATABASE_URI"] or f"sqlite:///{directory / 'app.db'}"
    )
    return settings


# --- the data directory ------------------------------------------------------------------


def use_private_files() -> None:
    """From now on, every file and directory this process creates is private (0600 / 0700).

    The databases (app.db, huey.db and their WAL files), the exports and the secret key hold
    users' data or the signing key. SQLite and open() create files with the mode the umask
    leaves, so the umask is the one place that covers them all. It is process-wide, so it is
    set explicitly, once at startup, by create_app() and by the Huey consumer. Idempotent.
    """
    os.umask(0o077)


def data_dir(path: Path | None = None) -> Path:
    """The directory holding app.db, huey.db, exports/ and the secret key; created if needed."""
    path = path or load()["DATA_DIR"]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def read_or_create_secret_key(directory: Path) -> str:
    """Return the secret key kept in the data dir, generating it on first use.

    The file is created with O_EXCL, so when two processes start at once exactly
    one of them writes it and both end up with the same key.
    """
    path = directory / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    # Another process may have created the file a moment ago and not written it yet.
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.02)
    raise RuntimeError(f"{path} is empty; delete it to generate a new secret key")


if __name__ == "__main__":
    # `python config.py`: check the configuration (run.sh does, before starting anything),
    # and say what is wrong in one line instead of a traceback.
    try:
        load()
    except ConfigError as exc:
        sys.exit(f"microblog: {exc}")
