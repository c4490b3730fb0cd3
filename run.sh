#!/usr/bin/env bash
# Microblog's one entry point. Works from any current directory.
#   ./run.sh            install if needed, migrate, start web (gunicorn + waitress) + worker (huey)
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

log() {
  printf '%s run.sh: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >&2
}

# A server that ran at least this long before dying is restarted after RESTART_MIN_DELAY;
# one that keeps dying sooner waits twice as long each time, up to RESTART_MAX_DELAY.
HEALTHY_AFTER=30 RESTART_MIN_DELAY=1 RESTART_MAX_DELAY=30

serve() {
  local host="${HOST:-127.0.0.1}" port="${PORT:-5000}" own_session=() stopping=""
  # name -> its command; the pid running it; when it started; its next restart delay;
  # the pid of the `sleep` it is waiting for before a restart.
  local -A command=() pid=() started=() delay=() timer=()
  command -v setsid >/dev/null 2>&1 && own_session=(setsid)
  # Links in mails point here unless SITE_URL (environment or .env) says where the public is.
  if [ -z "${SITE_URL:-}" ] && ! grep -qs '^SITE_URL=.' .env; then
    export SITE_URL="http://$host:$port"
  fi
  check_config
  migrate
  # Each server runs in its own session: a Ctrl-C in the terminal reaches only this script,
  # whose trap then sends each exactly one signal. (A second SIGINT would make the consumer
  # abandon its graceful shutdown.)
  # gunicorn's worker processes, each serving with waitress (gunicorn.conf.py, web_server.py):
  # clients too slow to send a whole request hold no thread and are disconnected.
  command[web]="$VENV/bin/gunicorn --bind $host:$port --workers ${WEB_WORKERS:-2} --threads 4 --access-logfile - microblog:create_app()"
  # Thread workers with fast polling: a task starts within ~10 ms of being queued.
  command[worker]="$VENV/bin/huey_consumer tasks.huey -w ${HUEY_WORKERS:-2} -k thread -d 0.01 -m 0.5 -b 1.1"
  for name in web worker; do
    delay[$name]=$RESTART_MIN_DELAY timer[$name]=""
    start_server "$name"
  done
  echo "Microblog on http://$host:$port (Ctrl-C stops everything)" >&2
  trap 'stopping=1' INT TERM
  local done_pid status name
  while [ -z "$stopping" ]; do
    status=0
    wait -n -p done_pid || status=$?
    [ -n "$stopping" ] || [ -z "${done_pid:-}" ] && continue
    for name in web worker; do
      if [ "${pid[$name]}" = "$done_pid" ]; then
        server_died "$name" "$status"
      elif [ "${timer[$name]}" = "$done_pid" ]; then
        timer[$name]=""
        start_server "$name"
      fi
    done
  done
  stop_servers
}

start_server() {
  # Word splitting is wanted: the commands above have no quoted arguments.
  # shellcheck disable=SC2086
  "${own_session[@]}" ${command[$1]} &
  pid[$1]=$!
  started[$1]=$EPOCHSECONDS
  log "$1 started (pid ${pid[$1]})"
}

server_died() {
  # The other server keeps running; this one starts again after a delay that grows while
  # it keeps dying young (a crash loop must not spin the CPU or flood the log).
  local name=$1 status=$2 lived=$((EPOCHSECONDS - started[$1]))
  if [ "$lived" -ge "$HEALTHY_AFTER" ]; then
    delay[$name]=$RESTART_MIN_DELAY
  fi
  log "$name (pid ${pid[$name]}) exited with status $status after ${lived} s; starting it again in ${delay[$name]} s"
  pid[$name]=""
  sleep "${delay[$name]}" &
  timer[$name]=$!
  delay[$name]=$((delay[$name] * 2 > RESTART_MAX_DELAY ? RESTART_MAX_DELAY : delay[$name] * 2))
}

stop_servers() {
  # gunicorn stops on TERM; the consumer gracefully on INT (running tasks finish or re-queue).
  log "stopping"
  for name in web worker; do
    [ -n "${timer[$name]}" ] && kill "${timer[$name]}" 2>/dev/null
  done
  [ -n "${pid[web]}" ] && kill -TERM "${pid[web]}" 2>/dev/null
  [ -n "${pid[worker]}" ] && kill -INT "${pid[worker]}" 2>/dev/null
  wait
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
