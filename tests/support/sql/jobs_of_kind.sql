-- name: test_jobs__of_kind :many
SELECT payload FROM jobs WHERE kind = $1 ORDER BY id
