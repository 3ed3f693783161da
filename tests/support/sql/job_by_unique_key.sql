-- name: test_jobs__by_unique_key :one
SELECT id FROM jobs WHERE kind = $1 AND unique_key = $2
