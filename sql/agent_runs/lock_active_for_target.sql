-- name: agent_runs__lock_active_for_target :many
-- Active runs of one issue or PR (optionally one dedupe slot), locked for a status change.
SELECT id, status::text AS status, dedupe_key
FROM agent_runs
WHERE repository_id = $1 AND target_kind = $2 AND target_number = $3
  AND status IN ('pending', 'starting', 'running', 'waiting')
  AND ($4::text IS NULL OR dedupe_key = $4)
FOR UPDATE
