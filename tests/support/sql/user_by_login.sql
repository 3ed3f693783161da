-- name: test_users__by_login :one
SELECT id FROM users WHERE github_login = $1
