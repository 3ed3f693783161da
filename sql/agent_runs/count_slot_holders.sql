-- name: agent_runs__count_slot_holders :one
-- Runs of a project that hold a slot: a workload exists or is being created for them.
SELECT count(*)::int
FROM agent_runs
WHERE project_id = $1
  AND (status IN ('starting', 'running') OR (status = 'waiting' AND wait_reason <> 'backpressure'))
