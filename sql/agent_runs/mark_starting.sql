-- name: agent_runs__mark_starting :exec
-- The run took a slot; its workload is about to be created under these names.
UPDATE agent_runs
SET status = 'starting', wait_reason = NULL, namespace = $2, job_name = $3,
    started_at = COALESCE(started_at, now())
WHERE id = $1
