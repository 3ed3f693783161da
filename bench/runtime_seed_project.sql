-- name: bench_runtime__seed_project :one
-- A project with a connected repository ($2 = its GitHub id) whose member $3 may start runs.
WITH project AS (
    INSERT INTO projects (slug, name, settings) VALUES ($1, $1, '{"slots": 1000}'::jsonb) RETURNING id
), repository AS (
    INSERT INTO repositories (project_id, provider, external_id, owner, name)
    SELECT id, 'github', $2, 'bench', $1 FROM project
), member AS (
    INSERT INTO project_members (project_id, user_id, role) SELECT id, $3, 'read_write' FROM project
)
SELECT id FROM project
