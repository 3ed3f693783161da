-- name: leader_leases__acquire :one
-- Takes or renews lease $1 for holder $2 for $3 seconds. Returns the term while $2 holds it, no row
-- while someone else does. The term grows whenever the holder changes.
INSERT INTO leader_leases AS l (name, holder, term, lease_until, acquired_at)
VALUES ($1, $2, 1, now() + make_interval(secs => $3), now())
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder,
    term = CASE WHEN l.holder = EXCLUDED.holder THEN l.term ELSE l.term + 1 END,
    acquired_at = CASE WHEN l.holder = EXCLUDED.holder THEN l.acquired_at ELSE now() END,
    lease_until = EXCLUDED.lease_until
WHERE l.holder = EXCLUDED.holder OR l.lease_until < now()
RETURNING term
