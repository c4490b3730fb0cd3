#!/usr/bin/env bash
# Microblog's one entry point. Works from any current directory.
#   ./run.sh            install if needed, migrate, start web (gunicorn + waitress) + worker (huey)
#                       from one parent (supervise.py)
#   ./run.sh test       install test dependencies and run the test suite (args go to pytest)
#   ./run.sh bench      run the benchmarks
#   ./run.sh lint       ruff, node --check, mypy
#   ./run.sh migrate    apply database migrations only
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

ensure_venv() {
  if [ ! -x "$PY" ]; then
    echo "Creating virtualenv in $VENV" >&2
    python3 -m venv "$VENV"
  fi
  # Reinstall only when the requirements changed since the last install.
  local stamp="$VENV/.installed-$1" want
  want="$(cat requirements.txt "$1" 2>/dev/null | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -r "$1"
    echo "$want" > "$stamp"
  fi
}

ensure_chromium() {
  # Browser tests drive Debian's chromium; install it when we are allowed to.
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's chromium for the browser tests" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || echo "Could not install chromium; browser tests will be skipped" >&2
  else
    echo "chromium not found and cannot be installed; browser tests will be skipped" >&2
  fi
}

ensure_node_tools() {
  # Node is needed by the tests only (package.json): axe-core checks each page's accessibility
  # in the browser tests; masto and megalodon, two Mastodon client libraries, are run against
  # our Mastodon API by tests/test_mastodon_clients.py.
  local stamp=node_modules/.installed want
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  if command -v npm >/dev/null 2>&1; then
    if npm ci --no-audit --no-fund --silent; then
      echo "$want" > "$stamp"
    else
      echo "Could not install the Node test tools; accessibility and Node client tests will be skipped" >&2
    fi
  else
    echo "npm not found; accessibility and Node client tests will be skipped" >&2
  fi
}

check_config() {
  # One clear line naming the variable, instead of a traceback from each process.
  "$PY" config.py
}

compile_translations() {
  # The compiled catalogues (.mo) are not in git: build each one missing or older than its .po.
  "$PY" i18n.py
}

migrate() {
  "$VENV/bin/flask" --app microblog db upgrade
}

serve() {
  local host="${HOST:-127.0.0.1}" port="${PORT:-5000}"
  # Links in mails point here unless SITE_URL (environment or .env) says where the public is.
  if [ -z "${SITE_URL:-}" ] && ! grep -qs '^SITE_URL=.' .env; then
    export SITE_URL="http://$host:$port"
  fi
  check_config
  migrate
  echo "Microblog on http://$host:$port (Ctrl-C stops everything)" >&2
  # One process (supervise.py) makes the app once and forks from it both the web server
  # (gunicorn's worker processes, each serving with waitress: gunicorn.conf.py,
  # web_server.py) and the Huey consumer (thread workers polling fast: a task starts within
  # ~10 ms of being queued), which so share its memory. It starts either again when it
  # dies, each in a session of its own, and stops both on Ctrl-C or SIGTERM.
  exec "$PY" supervise.py --bind "$host:$port" --workers "${WEB_WORKERS:-2}" --threads 4 \
    --access-logfile - --consumer-workers "${HUEY_WORKERS:-2}"
}

case "${1:-start}" in
  start|serve)
    ensure_venv requirements.txt
    compile_translations
    serve
    ;;
  test)
    shift
    ensure_venv requirements-dev.txt
    ensure_chromium
    ensure_node_tools
    compile_translations
    exec "$PY" -m pytest "$@"
    ;;
  bench)
    shift
    ensure_venv requirements-dev.txt
    for bench in tests/bench_*.py; do
      echo "== $bench" >&2
      "$PY" "$bench" "$@"
    done
    ;;
  lint)
    ensure_venv requirements-dev.txt
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    if command -v node >/dev/null 2>&1; then
      for script in static/*.js tests/clients/*.mjs; do node --check "$script"; done
    fi
    # Type checks of the application modules ([tool.mypy] in pyproject.toml).
    "$VENV/bin/mypy"
    ;;
  migrate)
    ensure_venv requirements.txt
    compile_translations
    check_config
    migrate
    ;;
  *)
    echo "usage: $0 [start|test|bench|lint|migrate]" >&2
    exit 2
    ;;
esac
