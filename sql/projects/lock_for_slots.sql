-- name: projects__lock_for_slots :one
-- Serialises slot accounting within one project; other projects are not touched. NO KEY UPDATE does
-- not block the foreign-key checks of new runs.
SELECT COALESCE((settings ->> 'slots')::int, $2) AS slots
FROM projects
WHERE id = $1
FOR NO KEY UPDATE
