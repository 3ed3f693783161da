-- name: agent_runs__with_workload :many
-- Runs whose workload should exist (for the resync), with the moment they took their slot.
SELECT id, attempt, status::text AS status, namespace, job_name, started_at
FROM agent_runs
WHERE status IN ('starting', 'running') AND job_name IS NOT NULL
