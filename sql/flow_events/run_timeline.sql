-- name: flow_events__run_timeline :many
-- The latest status events of a run, oldest first.
SELECT event_type, created_at
FROM (
    SELECT id, event_type, created_at FROM flow_events
    WHERE run_id = $1 AND event_type LIKE 'run.%'
    ORDER BY id DESC
    LIMIT 15
) AS latest
ORDER BY id
