-- name: test_agent_runs__set_job_name :exec
UPDATE agent_runs SET job_name = $2 WHERE id = $1
