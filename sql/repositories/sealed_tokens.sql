-- name: repositories__sealed_tokens :one
SELECT id, access_token_ciphertext, access_token_key_id, bot_token_ciphertext, bot_token_key_id
FROM repositories
WHERE id = $1
