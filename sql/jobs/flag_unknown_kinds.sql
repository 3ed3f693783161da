-- name: jobs__flag_unknown_kinds :many
-- Records an error on waiting jobs whose kind this build has no handler for. They keep waiting: a
-- newer build during a rolling upgrade may know them, and staff can see or delete them.
UPDATE jobs
SET last_error = format('unknown job kind %L: no handler is registered for it in this build', kind)
WHERE state IN ('available', 'failed')
  AND kind <> ALL($1::text[])
  AND last_error IS DISTINCT FROM format('unknown job kind %L: no handler is registered for it in this build', kind)
RETURNING id, kind
