-- name: test_users__seed :one
INSERT INTO users (email, github_login, is_platform_admin) VALUES ($1, $2, $3) RETURNING id
