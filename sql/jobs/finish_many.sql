-- name: jobs__finish_many :many
-- Records outcomes, fenced: a row changes only while it is still running under the same attempt.
-- Driving the join by `id = ANY($1)` keeps the plan on primary-key lookups however many jobs run.
-- $3 holds the new state per job ('succeeded', 'failed' or 'dead'); $4 the retry delay for 'failed'.
UPDATE jobs AS j
SET state = f.state::job_state,
    run_at = CASE WHEN f.state = 'failed' THEN now() + make_interval(secs => f.delay_secs) ELSE j.run_at END,
    last_error = COALESCE(f.error, j.last_error),
    finished_at = CASE WHEN f.state IN ('succeeded', 'dead') THEN now() END,
    lease_owner = NULL,
    lease_until = NULL
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::float8[], $5::text[])
    AS f(id, attempt, state, delay_secs, error)
WHERE j.id = ANY($1::bigint[])
  AND j.id = f.id
  AND j.attempt = f.attempt
  AND j.state = 'running'
RETURNING j.id
