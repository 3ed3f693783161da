-- name: test_agent_runs__run_token_hash :one
SELECT run_token_hash FROM agent_runs WHERE id = $1
