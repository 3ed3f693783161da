-- name: agent_runs__set_status :exec
-- Moves a run to a new status; the caller has checked the transition with the domain state machine.
UPDATE agent_runs
SET status = $2::run_status,
    wait_reason = NULL,
    finished_at = CASE WHEN $2::run_status IN ('succeeded', 'failed', 'canceled') THEN now() ELSE finished_at END,
    failure_reason = COALESCE($3, failure_reason)
WHERE id = $1
