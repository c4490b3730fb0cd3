"""config.py: every setting declared once, parsed once, invalid values refused at start."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import config

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


# --- no side effects in getters; files stay private --------------------------------------------


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_reading_settings_changes_nothing(tmp_path):
    before = os.umask(0o022)
    try:
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
