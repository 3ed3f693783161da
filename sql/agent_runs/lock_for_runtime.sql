-- name: agent_runs__lock_for_runtime :one
-- A run as the runtime sees it, locked for a status change.
SELECT r.id, r.project_id, p.slug AS project_slug, r.status::text AS status,
       r.wait_reason::text AS wait_reason, r.attempt, r.runtime_mode, r.target_kind, r.target_number,
       r.namespace, r.job_name, r.agent_key, r.model, r.reasoning_effort, r.correlation_id,
       COALESCE((r.payload ->> 'relaunches')::int, 0) AS relaunches
FROM agent_runs AS r
JOIN projects AS p ON p.id = r.project_id
WHERE r.id = $1
FOR NO KEY UPDATE OF r
