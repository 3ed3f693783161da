-- name: jobs__get :one
SELECT id, kind, payload, state::text AS state, priority, attempt, max_attempts, lease_owner, last_error,
       unique_key, correlation_id, run_at, created_at, started_at, finished_at
FROM jobs
WHERE id = $1
