-- name: test_agent_runs__mark_waiting_for_input :exec
-- A run that started in namespace $2 and now waits for a human: active, holding its namespace.
UPDATE agent_runs SET status = 'waiting', wait_reason = 'input', namespace = $2, started_at = now() WHERE id = $1
