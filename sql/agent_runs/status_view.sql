-- name: agent_runs__status_view :one
-- What a run's status comment shows.
SELECT r.id, r.repository_id, r.target_number, r.status::text AS status, r.stage, r.trigger_label,
       r.agent_key, r.attempt, r.pr_url, r.failure_reason, COALESCE(p.settings ->> 'locale', 'en') AS locale
FROM agent_runs AS r
JOIN projects AS p ON p.id = r.project_id
WHERE r.id = $1
