-- name: test_repositories__seed :one
INSERT INTO repositories (project_id, provider, external_id, owner, name) VALUES ($1, 'github', $2, $3, $4) RETURNING id
