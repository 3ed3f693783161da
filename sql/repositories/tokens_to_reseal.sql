-- name: repositories__tokens_to_reseal :many
-- Up to $3 repositories after id $2 holding a token sealed with a key other than $1, locked for resealing.
SELECT id, access_token_ciphertext, access_token_key_id, bot_token_ciphertext, bot_token_key_id
FROM repositories
WHERE id > $2
  AND (access_token_key_id <> $1 OR bot_token_key_id <> $1)
ORDER BY id
LIMIT $3
FOR UPDATE
