#!/usr/bin/env bash
# Microblog's one entry point. Works from any current directory.
#   ./run.sh            install if needed, migrate, start web (gunicorn) + worker (huey)
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

ensure_axe() {
  # The browser tests check each page with axe-core (package.json); Node is needed only here.
  local stamp=node_modules/.installed want
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  if command -v npm >/dev/null 2>&1; then
    if npm ci --no-audit --no-fund --silent; then
      echo "$want" > "$stamp"
    else
      echo "Could not install axe-core; accessibility tests will be skipped" >&2
    fi
  else
    echo "npm not found; accessibility tests will be skipped" >&2
  fi
}

check_config() {
  # One clear line naming the variable, instead of a traceback from each process.
  "$PY" config.py
}

migrate() {
  "$VENV/bin/flask" --app microblog db upgrade
}

serve() {
  local host="${HOST:-127.0.0.1}" port="${PORT:-5000}" pids=() own_session=()
  command -v setsid >/dev/null 2>&1 && own_session=(setsid)
  check_config
  migrate
  # Each server runs in its own session: a Ctrl-C in the terminal reaches only this script,
  # whose trap then sends each exactly one signal. (A second SIGINT would make the consumer
  # abandon its graceful shutdown.)
  "${own_session[@]}" "$VENV/bin/gunicorn" --bind "$host:$port" --workers "${WEB_WORKERS:-2}" --threads 4 \
    --access-logfile - 'microblog:create_app()' &
  pids+=($!)
  if [ -f tasks.py ]; then
    # Thread workers with fast polling: a task starts within ~10 ms of being queued.
    "${own_session[@]}" "$VENV/bin/huey_consumer" tasks.huey -w "${HUEY_WORKERS:-2}" -k thread -d 0.01 -m 0.5 -b 1.1 &
    pids+=($!)
  fi
  echo "Microblog on http://$host:$port (Ctrl-C stops everything)" >&2
  # gunicorn stops on TERM; the consumer stops gracefully on INT (running tasks finish or re-queue).
  trap 'kill -TERM "${pids[0]}" 2>/dev/null; kill -INT "${pids[@]:1}" 2>/dev/null; wait' INT TERM
  wait -n || true
  kill -TERM "${pids[0]}" 2>/dev/null || true
  kill -INT "${pids[@]:1}" 2>/dev/null || true
  wait
}

case "${1:-start}" in
  start|serve)
    ensure_venv requirements.txt
    serve
    ;;
  test)
    shift
    ensure_venv requirements-dev.txt
    ensure_chromium
    ensure_axe
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
      for script in static/*.js; do node --check "$script"; done
    fi
    # Type checks of the application modules ([tool.mypy] in pyproject.toml).
    "$VENV/bin/mypy"
    ;;
  migrate)
    ensure_venv requirements.txt
    check_config
    migrate
    ;;
  *)
    echo "usage: $0 [start|test|bench|lint|migrate]" >&2
    exit 2
    ;;
esac
