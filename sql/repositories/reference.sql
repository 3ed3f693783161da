-- name: repositories__reference :one
-- Where a repository lives at its host.
SELECT provider, owner, name FROM repositories WHERE id = $1
