-- name: bench_jobs__count_succeeded :one
SELECT count(*)::bigint FROM jobs WHERE state = 'succeeded'
