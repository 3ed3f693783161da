#!/usr/bin/env bash
# Sets up and runs codex-k8s locally: a throwaway PostgreSQL with pgvector on 127.0.0.1:55432, the
# schema migrated, then `codex-k8s serve` with all three roles on http://127.0.0.1:8080 (without a
# Kubernetes configuration, the worker role is left out).
# Arguments go to `serve` (e.g. --role=gateway). Any CODEXK8S_* variable you export wins.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
scripts/dev-postgres.sh start
if ! scripts/dev-postgres.sh psql -qtAc "SELECT 1 FROM pg_database WHERE datname = 'codex_k8s'" | grep -q 1; then
  scripts/dev-postgres.sh psql -qc 'CREATE DATABASE codex_k8s'
fi
export CODEXK8S_DATABASE_URL=${CODEXK8S_DATABASE_URL:-postgres://postgres@127.0.0.1:55432/codex_k8s}
export CODEXK8S_HTTP_ADDR=${CODEXK8S_HTTP_ADDR:-127.0.0.1:8080}
export CODEXK8S_LOG_FORMAT=${CODEXK8S_LOG_FORMAT:-text}
# A local-only webhook secret; set your own to match the webhook configured on GitHub.
export CODEXK8S_GITHUB_WEBHOOK_SECRETS=${CODEXK8S_GITHUB_WEBHOOK_SECRETS:-local-dev-webhook-secret}
cargo build --quiet --bin codex-k8s
target/debug/codex-k8s migrate
# The worker role runs agents on Kubernetes: it needs KUBECONFIG, ~/.kube/config or an in-cluster
# service account. Without any, run the other roles so webhooks are still received and turned into
# runs, which wait until a worker with a cluster starts.
if [ $# -eq 0 ] && [ -z "${CODEXK8S_ROLES:-}" ] && [ -z "${KUBECONFIG:-}" ] && [ ! -f "$HOME/.kube/config" ] \
  && [ -z "${KUBERNETES_SERVICE_HOST:-}" ]; then
  echo "run.sh: no Kubernetes configuration found; starting the gateway and control roles only" >&2
  set -- --role=gateway,control
fi
exec target/debug/codex-k8s serve "$@"
