-- name: jobs__finish_many :many
-- Records outcomes, fenced: a row changes only while it is still running under the same attempt.
-- $1/$2 are parallel arrays of (id, attempt); $3 holds the new state per job ('succeeded', 'failed'
-- or 'dead'), $4 the retry delay in seconds for 'failed', $5 the error. Values are looked up by
-- position instead of joining an unnest, so the plan stays a primary-key scan for any batch size.
UPDATE jobs AS j
SET state = ($3::text[])[array_position($1::bigint[], j.id)]::job_state,
    run_at = CASE
        WHEN ($3::text[])[array_position($1::bigint[], j.id)] = 'failed'
        THEN now() + make_interval(secs => ($4::float8[])[array_position($1::bigint[], j.id)])
        ELSE j.run_at
    END,
    last_error = COALESCE(($5::text[])[array_position($1::bigint[], j.id)], j.last_error),
    finished_at = CASE
        WHEN ($3::text[])[array_position($1::bigint[], j.id)] IN ('succeeded', 'dead') THEN now()
    END,
    lease_owner = NULL,
    lease_until = NULL
WHERE j.id = ANY($1::bigint[])
  AND j.state = 'running'
  AND j.attempt = ($2::int[])[array_position($1::bigint[], j.id)]
RETURNING j.id
