-- name: test_jobs__count_in_state :one
SELECT count(*)::bigint FROM jobs WHERE state = $1::job_state
