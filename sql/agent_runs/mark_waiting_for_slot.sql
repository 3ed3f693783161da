-- name: agent_runs__mark_waiting_for_slot :exec
UPDATE agent_runs SET status = 'waiting', wait_reason = 'backpressure' WHERE id = $1
