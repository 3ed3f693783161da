-- name: test_singleton_ticks__overlaps :one
-- Pairs of rounds by different holders whose time spans intersect: must be zero.
SELECT count(*)::bigint
FROM singleton_ticks a
JOIN singleton_ticks b ON a.holder < b.holder
 AND tstzrange(a.started_at, a.ended_at) && tstzrange(b.started_at, b.ended_at)
