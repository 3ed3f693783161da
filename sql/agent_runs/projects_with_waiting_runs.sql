-- name: agent_runs__projects_with_waiting_runs :many
SELECT DISTINCT project_id FROM agent_runs WHERE status = 'waiting' AND wait_reason = 'backpressure'
