-- name: test_singleton_ticks__by_holder :many
SELECT holder, min(term)::bigint AS min_term, max(term)::bigint AS max_term, count(*)::bigint AS ticks,
       min(started_at) AS first_at, max(ended_at) AS last_at
FROM singleton_ticks
GROUP BY holder
ORDER BY min(started_at)
