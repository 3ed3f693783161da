-- name: agent_runs__waiting_for_slot :many
-- The oldest runs of a project waiting for a slot, at most $2.
SELECT id, attempt, correlation_id
FROM agent_runs
WHERE project_id = $1 AND status = 'waiting' AND wait_reason = 'backpressure'
ORDER BY created_at, id
LIMIT $2
