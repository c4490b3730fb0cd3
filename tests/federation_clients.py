"""Independent ActivityPub implementations, each in a virtualenv of its own.

Our server is checked by programs nobody here wrote: fediverse-pasture, bovine, httpsig and
http-message-signatures. Their pins clash with the app's (bovine pins an older
`cryptography`), so each gets `.venv-<name>` beside the app's `.venv`, installed from
`tests/clients/requirements-<name>.txt` once and again only when that file changes (a
stamp of its hash, as run.sh's ensure_venv does). Their scripts in tests/clients/ run in
that venv as subprocesses.

No pytest here; the fixtures are in conftest.py.
"""

import fcntl
import hashlib
import json
import os
import subprocess
import venv
from pathlib import Path
from typing import Any

from tests.live import PROJECT_DIR, _spawn, read_log, stop_process, wait_for

CLIENTS_DIR = Path(__file__).resolve().parent / "clients"


class ClientSetupError(RuntimeError):
    """A client's venv could not be made (no network to PyPI, a broken pin, …)."""


def client_python(name: str) -> Path:
    """The interpreter of `.venv-<name>`, created or brought up to date first.

    Several test processes may ask at once (pytest -n, two engineers' runs on one checkout):
    a lock file serialises the install.
    """
    requirements = CLIENTS_DIR / f"requirements-{name}.txt"
    home = PROJECT_DIR / f".venv-{name}"
    python = home / "bin" / "python"
    want = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = home / ".installed"
    with open(PROJECT_DIR / f".venv-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == want and python.exists():
            return python
        if not python.exists():
            venv.create(home, with_pip=True, clear=True)
        install = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "-r", requirements],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if install.returncode:
            raise ClientSetupError(f"pip install -r {requirements} failed:\n{install.stderr}")
        stamp.write_text(want)
    return python


def client_env() -> dict[str, str]:
    """The environment of a client script: nothing of the app's venv leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_client(name: str, script: str, payload: Any, timeout: float = 60) -> Any:
    """Run tests/clients/`script` in `name`'s venv with `payload` as JSON on stdin; its
    stdout parsed as JSON."""
    result = subprocess.run(
        [client_python(name), CLIENTS_DIR / script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=client_env(),
        cwd=CLIENTS_DIR,
    )
    if result.returncode:
        raise AssertionError(f"{script} exited with {result.returncode}:\n{result.stderr}")
    return json.loads(result.stdout)


class ClientServer:
    """A client script that serves HTTP and takes commands as JSON lines on stdin, answering
    each with one JSON line on stdout; it runs in `cwd` (where it may leave files), its log
    goes to `log`."""

    def __init__(self, name: str, script: str, log: Path, *args: str, cwd: Path):
        command = [client_python(name), CLIENTS_DIR / script, *args]
        self.log = Path(log)
        with open(self.log, "ab") as stderr:
            self.process = subprocess.Popen(
                [str(part) for part in command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=client_env(),
                cwd=cwd,
                start_new_session=True,
            )
        ready = self._read_line()
        self.info = ready

    def _read_line(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            log = self.log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"client exited with {self.process.returncode}:\n{log}")
        return json.loads(line)

    def command(self, op: str, **arguments: Any) -> Any:
        """Send one command; its answer (an error in the script is raised here)."""
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        answer = self._read_line()
        if "error" in answer:
            raise AssertionError(f"{op} failed in the client: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        """Close its stdin (it then stops by itself); killed if it has not within 10 s."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            self.process.stdout.close()


class PastureServer:
    """fediverse-pasture's verify_actor app serving its test actors on `host:port`."""

    def __init__(self, host: str, port: int, work_dir: Path):
        python = client_python("pasture")
        self.url = f"http://{host}:{port}"
        script = CLIENTS_DIR / "pasture_verify_actor.py"
        # It writes its test actors' keys (data.toml) and a JSON-LD cache where it runs.
        env = {**client_env(), "PASTURE_HOST": host, "PASTURE_PORT": str(port)}
        self.process = _spawn([python, script], work_dir / "pasture.log", env, cwd=work_dir)
        self.process.args = [str(python), str(script)]
        wait_for(self._answers, timeout=60, what="fediverse-pasture to answer")

    def _answers(self) -> bool:
        import requests

        if self.process.poll() is not None:
            raise AssertionError(f"pasture exited:\n{read_log(self.process)[-4000:]}")
        try:
            return requests.get(self.url + "/", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def verify(self, actor_uri: str) -> dict:
        """verify_actor's verdict on `actor_uri`: {"alice": {"get_actor": …, "post_inbox": …},
        …, "webfinger": bool} and its log of messages."""
        import requests

        response = requests.post(
            self.url + "/",
            data={"actor_uri": actor_uri},
            headers={"Accept": "application/json"},
            timeout=300,
        )
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        stop_process(self.process)


class Canary:
    """A TCP listener on 127.0.0.1 that writes down every connection made to it (and closes
    it): the target an SSRF would reach."""

    def __init__(self):
        import socket
        import threading

        self.hits: list[tuple[str, int]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, peer = self.listener.accept()
            except OSError:  # closed by stop()
                return
            self.hits.append(peer)
            connection.close()

    def stop(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


# --- our server, read as another server reads it ---------------------------------------------

ACTIVITY_JSON = "application/activity+json"
LD_JSON = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def handle(site, username: str) -> str:
    """`username`'s fediverse handle on `site`: name@host:port, as SITE_URL says."""
    return f"{username}@{site.env['SITE_URL'].split('://', 1)[1]}"


def get_json(url: str, accept: str = ACTIVITY_JSON, **params: str) -> dict:
    """GET `url` unsigned, asking for `accept`; the JSON body of a 200."""
    import requests

    response = requests.get(url, headers={"Accept": accept}, params=params, timeout=30)
    assert response.status_code == 200, (url, response.status_code, response.text[:500])
    return response.json()


def actor_url(site, username: str) -> str:
    """The actor id our WebFinger gives for `username` (rel self, ActivityPub JSON)."""
    found = get_json(
        f"{site.url}/.well-known/webfinger",
        accept="application/jrd+json",
        resource=f"acct:{handle(site, username)}",
    )
    links = [link for link in found.get("links", []) if link.get("rel") == "self"]
    assert links and links[0].get("type") == ACTIVITY_JSON, found
    return links[0]["href"]


# What may change while a refused request is handled, by table (None: the whole table):
# counts of requests for rate limits; the consumers' heartbeats; the instance actor's key
# pair, made the first time the site signs a fetch; and when a remote actor's document was
# last fetched (a signature that fails with the cached key makes the server fetch the key
# once more, in case the actor rotated it).
BOOKKEEPING = {
    "rate_limit_hit": None,
    "consumer": None,
    "instance_actor_key": None,
    "remote_actor": {"fetched_at"},
}


def database_rows(site) -> dict[str, list]:
    """Every row of every table of the site's SQLite database, sorted, by table name; without
    the BOOKKEEPING tables and columns."""
    names = site.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = sorted(name for (name,) in names if not name.startswith("sqlite_"))
    rows = {}
    for table in tables:
        if table in BOOKKEEPING and BOOKKEEPING[table] is None:
            continue
        columns = [row[1] for row in site.query(f'PRAGMA table_info("{table}")')]
        kept = [c for c in columns if c not in (BOOKKEEPING.get(table) or ())]
        select = ", ".join(f'"{column}"' for column in kept)
        rows[table] = sorted(map(repr, site.query(f'SELECT {select} FROM "{table}"')))
    return rows


def changed_tables(before: dict[str, list], after: dict[str, list]) -> dict[str, list]:
    """The rows added or removed, by table, between two database_rows()."""
    changes = {}
    for table in sorted(set(before) | set(after)):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        if old != new:
            changes[table] = [f"- {row}" for row in old - new] + [f"+ {row}" for row in new - old]
    return changes
