-- name: test_projects__seed :one
INSERT INTO projects (slug, name, settings) VALUES ($1, $1, $2) RETURNING id
