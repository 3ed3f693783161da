-- name: users__access_by_github_login :one
-- What a GitHub login may do in a project: platform flags and the member role, if any.
SELECT u.is_platform_owner, u.is_platform_admin, m.role::text AS member_role,
       m.learning_mode_override
FROM users u
LEFT JOIN project_members m ON m.user_id = u.id AND m.project_id = $2
WHERE lower(u.github_login) = lower($1)
