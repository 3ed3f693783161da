-- name: test_repositories__id_by_external :one
SELECT id FROM repositories WHERE provider = 'github' AND external_id = $1
