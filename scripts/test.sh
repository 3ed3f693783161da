#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs and starts the throwaway PostgreSQL with pgvector
# (scripts/dev-postgres.sh), then `cargo test`. Each test creates its own fresh database on it.
# Arguments go to `cargo test` (e.g. --test queue). Ends with one summary line over all test binaries.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/dev-postgres.sh start
export CODEXK8S_TEST_DATABASE_URL=${CODEXK8S_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:55432/postgres}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
