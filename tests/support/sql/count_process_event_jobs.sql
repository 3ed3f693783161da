-- name: test_jobs__count_process_event :one
SELECT count(*)::bigint FROM jobs WHERE kind = 'process_event'
