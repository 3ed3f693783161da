-- name: test_agent_runs__by_correlation :one
SELECT id, status::text AS status, attempt, namespace, job_name, failure_reason, wait_reason::text AS wait_reason
FROM agent_runs WHERE correlation_id = $1
