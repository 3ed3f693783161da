-- name: test_agent_runs__mark_starting :exec
-- What a launch that died after taking its slot leaves: the run starting, its names recorded.
UPDATE agent_runs SET status = 'starting', namespace = $2, job_name = $3, started_at = now() WHERE id = $1
