-- name: agent_runs__lock_status_comment :exec
-- Serialises the status-comment jobs of one run ($1) until the caller's transaction ends, so two of
-- them never both find no comment and both post one. Run rows are not locked: statuses keep moving.
SELECT pg_advisory_xact_lock(hashtextextended('status-comment:' || $1::text, 0))
