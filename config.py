"""Configuration shared by the web app and the Huey consumer.

Both processes import this module, so both read the same environment, the same
optional `.env` file and the same data directory.
"""

import os
import secrets
import time
from pathlib import Path

from dotenv import load_dotenv

PROJECT_DIR = Path(__file__).resolve().parent

# Loaded explicitly (not via Flask's CLI) so that `huey_consumer tasks.huey` sees it too.
load_dotenv(PROJECT_DIR / ".env")


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
    path = path or Path(os.environ.get("MICROBLOG_DATA_DIR") or PROJECT_DIR / "instance")
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


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on")."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str) -> list[str]:
    """A comma-separated environment variable as a list."""
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def from_environment(directory: Path | None = None) -> dict:
    """Build the app configuration from the environment (DESIGN.md §2).

    `directory` overrides MICROBLOG_DATA_DIR (tests use a temporary one).
    """
    directory = data_dir(directory)
    return {
        "DATA_DIR": str(directory),
        "SECRET_KEY": os.environ.get("SECRET_KEY") or read_or_create_secret_key(directory),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL")
        or f"sqlite:///{directory / 'app.db'}",
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "MAIL_SERVER": os.environ.get("MAIL_SERVER") or None,
        "MAIL_PORT": env_int("MAIL_PORT", 25),
        "MAIL_USE_TLS": env_bool("MAIL_USE_TLS"),
        "MAIL_USE_SSL": env_bool("MAIL_USE_SSL"),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_DEFAULT_SENDER": os.environ.get("MAIL_DEFAULT_SENDER") or "microblog@localhost",
        "ADMINS": env_list("ADMINS"),
        "POSTS_PER_PAGE": env_int("POSTS_PER_PAGE", 25),
        # Links in emails are built from the Host header: in production, pin the names.
        "TRUSTED_HOSTS": env_list("TRUSTED_HOSTS") or None,
    }
