-- name: bench_runtime__seed_user :one
INSERT INTO users (email, github_login) VALUES ('bench@example.com', 'Codertocat') RETURNING id
