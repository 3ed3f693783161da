//! Rows tests start from: a project with a connected repository, users, memberships.

use serde_json::Value;
use uuid::Uuid;

use super::TestDb;

/// A project `slug` with `settings` and the GitHub repository `owner/name` (id `repo_id`) connected.
pub async fn project_with_repository(
    db: &TestDb,
    slug: &str,
    settings: Value,
    repo_id: i64,
    owner: &str,
    name: &str,
) -> Uuid {
    let project: Uuid = sqlx::query_scalar(include_str!("sql/seed_project.sql"))
        .bind(slug)
        .bind(settings)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    sqlx::query_scalar::<_, Uuid>(include_str!("sql/seed_repository.sql"))
        .bind(project)
        .bind(repo_id)
        .bind(owner)
        .bind(name)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    project
}

pub async fn user(db: &TestDb, email: &str, github_login: &str) -> Uuid {
    sqlx::query_scalar(include_str!("sql/seed_user.sql"))
        .bind(email)
        .bind(github_login)
        .bind(false)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

pub async fn member(db: &TestDb, project: Uuid, user: Uuid, role: &str) {
    sqlx::query(include_str!("sql/seed_member.sql"))
        .bind(project)
        .bind(user)
        .bind(role)
        .execute(&db.pool)
        .await
        .unwrap();
}
