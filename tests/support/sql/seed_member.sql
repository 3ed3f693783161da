-- name: test_project_members__seed :exec
INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3::project_role)
