#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs and starts the throwaway PostgreSQL with pgvector
# (scripts/dev-postgres.sh), then `cargo test`. Each test creates its own fresh database on it.
# Arguments go to `cargo test` (e.g. --test queue).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/dev-postgres.sh start
export CODEXK8S_TEST_DATABASE_URL=${CODEXK8S_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:55432/postgres}
cargo test --locked "$@"
