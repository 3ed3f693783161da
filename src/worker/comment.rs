//! The `github_comment` handler: posts a message on an issue or pull request (and adds labels), as
//! the control role asked. The comment carries a hidden marker made from the job id, so a retry
//! after a crash edits the comment it already posted instead of adding a second one.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::provider::{ProviderConnector, ProviderError, RepoRef, RepositoryProvider};
use crate::queue::{JobContext, JobError};
use crate::sealing::KeyRing;
use crate::sql;
use crate::store::audit;
use crate::store::map_sqlx_error;
use crate::tokens::{self, TokenKind};

/// What the GitHub handlers need.
pub struct ProviderDeps<C> {
    pub pool: sqlx::PgPool,
    pub connector: C,
    pub keys: Option<KeyRing>,
    /// The admin console's address, linked from status comments.
    pub console_url: String,
}

#[derive(Deserialize)]
struct Payload {
    repository_id: Uuid,
    target_number: i64,
    body: String,
    #[serde(default)]
    add_labels: Vec<String>,
}

/// Maps a provider failure onto the queue's retry rules, honouring the host's wait.
pub fn job_error(e: ProviderError) -> JobError {
    match e.retry_after() {
        Some(wait) => JobError::retry_after(e.to_string(), wait),
        None if e.is_transient() => JobError::retryable(e.to_string()),
        None => JobError::permanent(e.to_string()),
    }
}

/// The repository's place at its host and a provider acting with its access token.
pub async fn connect<C: ProviderConnector>(
    deps: &ProviderDeps<C>,
    repository: Uuid,
) -> Result<(RepoRef, C::Provider), JobError> {
    let keys = deps.keys.as_ref().ok_or_else(|| {
        JobError::retryable(
            "CODEXK8S_TOKEN_KEYS is not set, so the repository's token cannot be opened",
        )
    })?;
    let mut conn = deps.pool.acquire().await.map_err(map_sqlx_error)?;
    let Some((_provider, owner, name)): Option<(String, String, String)> =
        sqlx::query_as(sql!("repositories/reference"))
            .bind(repository)
            .fetch_optional(&mut *conn)
            .await
            .map_err(map_sqlx_error)?
    else {
        return Err(JobError::permanent(format!(
            "repository {repository} does not exist"
        )));
    };
    let token = tokens::open(&mut conn, keys, repository, TokenKind::Access)
        .await
        .map_err(|e| JobError::permanent(e.to_string()))?
        .ok_or_else(|| {
            JobError::permanent(format!(
                "repository {owner}/{name} has no access token stored"
            ))
        })?;
    let provider = deps.connector.connect(token.expose()).map_err(job_error)?;
    Ok((RepoRef { owner, name }, provider))
}

pub async fn handle<C: ProviderConnector>(
    ctx: JobContext,
    deps: Arc<ProviderDeps<C>>,
) -> Result<(), JobError> {
    let payload: Payload = ctx.parse_payload()?;
    let number = u64::try_from(payload.target_number).map_err(|_| {
        JobError::permanent(format!("invalid item number {}", payload.target_number))
    })?;
    let (repo, provider) = connect(&deps, payload.repository_id).await?;
    let marker = format!("<!-- codex-k8s:job:{} -->", ctx.id);
    let comment = provider
        .upsert_comment(&repo, number, &marker, &payload.body)
        .await
        .map_err(job_error)?;
    provider
        .add_labels(&repo, number, &payload.add_labels)
        .await
        .map_err(job_error)?;

    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    ctx.lock_lease(&mut tx).await?;
    let correlation = ctx.correlation_id.to_string();
    let target = json!({ "repository": format!("{}/{}", repo.owner, repo.name), "number": number });
    let mut events = vec![(
        if comment.created {
            "github.comment.created"
        } else {
            "github.comment.updated"
        },
        json!({ "target": target, "comment_id": comment.id, "url": comment.url }),
    )];
    if !payload.add_labels.is_empty() {
        events.push((
            "github.labels.added",
            json!({ "target": target, "labels": payload.add_labels }),
        ));
    }
    for (event_type, payload) in events {
        audit::append_system(&mut tx, &correlation, None, event_type, payload).await?;
    }
    tx.commit().await.map_err(map_sqlx_error)?;
    Ok(())
}

#[derive(Deserialize)]
struct Acknowledge {
    repository_id: Uuid,
    target_number: i64,
}

/// The item number of a payload, which must be positive.
fn item_number(number: i64) -> Result<u64, JobError> {
    u64::try_from(number).map_err(|_| JobError::permanent(format!("invalid item number {number}")))
}

/// Audits what a job did on `repo` item `number`, fenced by the job's lease. `details` is merged
/// into the payload beside the target.
async fn audit_effect<C>(
    ctx: &JobContext,
    deps: &ProviderDeps<C>,
    repo: &RepoRef,
    number: u64,
    event_type: &str,
    details: serde_json::Value,
) -> Result<(), JobError> {
    let mut payload = json!({
        "target": { "repository": format!("{}/{}", repo.owner, repo.name), "number": number },
    });
    if let (Some(p), Some(extra)) = (payload.as_object_mut(), details.as_object()) {
        p.extend(extra.clone());
    }
    let mut tx = deps.pool.begin().await.map_err(map_sqlx_error)?;
    ctx.lock_lease(&mut tx).await?;
    audit::append_system(
        &mut tx,
        &ctx.correlation_id.to_string(),
        None,
        event_type,
        payload,
    )
    .await?;
    tx.commit().await.map_err(map_sqlx_error)?;
    Ok(())
}

/// The `github_acknowledge` handler: marks the item whose label started a run as seen.
pub async fn acknowledge<C: ProviderConnector>(
    ctx: JobContext,
    deps: Arc<ProviderDeps<C>>,
) -> Result<(), JobError> {
    let payload: Acknowledge = ctx.parse_payload()?;
    let number = item_number(payload.target_number)?;
    let (repo, provider) = connect(&deps, payload.repository_id).await?;
    provider
        .acknowledge(&repo, number)
        .await
        .map_err(job_error)?;
    audit_effect(&ctx, &deps, &repo, number, "github.acknowledged", json!({})).await
}

#[derive(Deserialize)]
struct Labels {
    repository_id: Uuid,
    target_number: i64,
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

/// The `github_labels` handler: adds and removes labels on an issue or pull request. Both are
/// idempotent at the host, so a retry after a crash changes nothing twice.
pub async fn labels<C: ProviderConnector>(
    ctx: JobContext,
    deps: Arc<ProviderDeps<C>>,
) -> Result<(), JobError> {
    let payload: Labels = ctx.parse_payload()?;
    let number = item_number(payload.target_number)?;
    let (repo, provider) = connect(&deps, payload.repository_id).await?;
    for label in &payload.remove {
        provider
            .remove_label(&repo, number, label)
            .await
            .map_err(job_error)?;
    }
    provider
        .add_labels(&repo, number, &payload.add)
        .await
        .map_err(job_error)?;
    let details = json!({ "added": payload.add, "removed": payload.remove });
    audit_effect(&ctx, &deps, &repo, number, "github.labels.changed", details).await
}
