-- name: agent_runs__set_run_token_hash :exec
-- Records the hash of attempt $2's run token, if that attempt is still the run's.
UPDATE agent_runs SET run_token_hash = $3 WHERE id = $1 AND attempt = $2
