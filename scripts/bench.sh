#!/usr/bin/env bash
# Runs the queue benchmark against a durable PostgreSQL (fsync and synchronous commit on) of its own,
# on port 55433, built in release mode. Extra arguments go to codex-k8s-bench (see --help).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# The webhook suite floods the service with wrk (a load generator in its own process) when it can.
if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -qq wrk >/dev/null 2>&1 || echo "bench: wrk not installed; using the in-process client" >&2
fi
export CODEXK8S_DEV_PG_PORT=55433 CODEXK8S_DEV_PG_FAST=0
scripts/dev-postgres.sh start
trap 'scripts/dev-postgres.sh stop' EXIT
export CODEXK8S_PGBENCH="$(scripts/dev-postgres.sh bin)/pgbench"
cargo run --release --quiet --bin codex-k8s-bench -- --database-url "postgres://postgres@127.0.0.1:55433/postgres" "$@"
