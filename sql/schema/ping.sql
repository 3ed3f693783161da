-- name: schema__ping :one
SELECT 1::int AS ok
