-- name: repositories__find_connected :one
-- A connected repository by provider id, with its project's settings.
SELECT r.id AS repository_id, r.project_id, p.settings AS project_settings
FROM repositories r
JOIN projects p ON p.id = r.project_id
WHERE r.provider = $1 AND r.external_id = $2
