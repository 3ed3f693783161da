//! The GitHub adapter of [`RepositoryProvider`], through `octocrab`, at a configurable API base URL
//! (`CODEXK8S_GITHUB_API_URL`, so tests point it at a local fake). Rate limits become
//! [`ProviderError::RateLimited`] with GitHub's own wait: `retry-after`, else `x-ratelimit-reset`,
//! else a minute for a secondary limit.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::CommentId;
use octocrab::models::reactions::ReactionContent;

use crate::domain::provider::{
    CommentRef, ProviderConnector, ProviderError, RepoRef, RepositoryProvider,
};

/// Longest one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait on a secondary rate limit that names no time (GitHub's advice: at least 60 s).
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// Comments scanned for a marker, newest pages last; a status comment is among the first ones.
const MARKER_SCAN_PAGES: u32 = 10;

/// Connects to GitHub at `base_url` with a repository's token.
#[derive(Debug, Clone)]
pub struct GithubConnector {
    base_url: String,
}

impl GithubConnector {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }
}

impl ProviderConnector for GithubConnector {
    type Provider = GithubProvider;

    fn connect(&self, token: &str) -> Result<GithubProvider, ProviderError> {
        let client = Octocrab::builder()
            .base_uri(self.base_url.as_str())
            .map_err(|e| ProviderError::Refused(format!("CODEXK8S_GITHUB_API_URL: {e}")))?
            .personal_token(token.to_owned())
            .set_connect_timeout(Some(Duration::from_secs(5)))
            .set_read_timeout(Some(CALL_TIMEOUT))
            .build()
            .map_err(|e| ProviderError::Unavailable(format!("GitHub client: {e}")))?;
        Ok(GithubProvider { client })
    }
}

pub struct GithubProvider {
    client: Octocrab,
}

fn header_secs(headers: &http::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Maps an octocrab error; never includes the token (octocrab does not echo it).
fn classify(what: &str, err: octocrab::Error) -> ProviderError {
    let octocrab::Error::GitHub { source, .. } = err else {
        return ProviderError::Unavailable(format!("{what}: {err}"));
    };
    let status = source.status_code.as_u16();
    let message = format!("{what}: {} ({status})", source.message);
    let headers = source.headers.clone().unwrap_or_default();
    let retry_after = header_secs(&headers, "retry-after").map(Duration::from_secs);
    let remaining = header_secs(&headers, "x-ratelimit-remaining");
    let reset_in = source.rate_limit_reset.map(|reset| {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        Duration::from_secs(reset.saturating_sub(now).max(1))
    });
    let secondary = source
        .message
        .to_ascii_lowercase()
        .contains("secondary rate limit");
    match status {
        429 | 403 if retry_after.is_some() || remaining == Some(0) || secondary => {
            ProviderError::RateLimited {
                retry_after: retry_after.or(reset_in).unwrap_or(SECONDARY_LIMIT_WAIT),
                message,
            }
        }
        401 | 403 => ProviderError::Unauthorized(message),
        404 => ProviderError::NotFound(message),
        s if s >= 500 => ProviderError::Unavailable(message),
        _ => ProviderError::Refused(message),
    }
}

async fn timed<T>(
    what: &str,
    call: impl Future<Output = Result<T, octocrab::Error>>,
) -> Result<T, ProviderError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map_err(|e| classify(what, e)),
        Err(_) => Err(ProviderError::Unavailable(format!(
            "{what}: no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

impl GithubProvider {
    /// The id of the comment on `number` whose body contains `marker`, if any.
    async fn find_marked(
        &self,
        repo: &RepoRef,
        number: u64,
        marker: &str,
    ) -> Result<Option<u64>, ProviderError> {
        let issues = self.client.issues(&repo.owner, &repo.name);
        for page in 1..=MARKER_SCAN_PAGES {
            let what = format!("list comments of {}/{}#{number}", repo.owner, repo.name);
            let comments = timed(
                &what,
                issues.list_comments(number).per_page(100).page(page).send(),
            )
            .await?;
            if let Some(found) = comments
                .items
                .iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            {
                return Ok(Some(found.id.into_inner()));
            }
            if comments.next.is_none() {
                break;
            }
        }
        Ok(None)
    }
}

impl RepositoryProvider for GithubProvider {
    async fn upsert_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<CommentRef, ProviderError> {
        let issues = self.client.issues(&repo.owner, &repo.name);
        let full = format!("{body}\n\n{marker}");
        let target = format!("{}/{}#{number}", repo.owner, repo.name);
        let (comment, created) = match self.find_marked(repo, number, marker).await? {
            Some(id) => (
                timed(
                    &format!("edit comment {id} on {target}"),
                    issues.update_comment(CommentId(id), &full),
                )
                .await?,
                false,
            ),
            None => (
                timed(
                    &format!("comment on {target}"),
                    issues.create_comment(number, &full),
                )
                .await?,
                true,
            ),
        };
        Ok(CommentRef {
            id: comment.id.into_inner(),
            url: Some(comment.html_url.to_string()),
            created,
        })
    }

    async fn acknowledge(&self, repo: &RepoRef, number: u64) -> Result<(), ProviderError> {
        let what = format!("react to {}/{}#{number}", repo.owner, repo.name);
        timed(
            &what,
            self.client
                .issues(&repo.owner, &repo.name)
                .create_reaction(number, ReactionContent::Eyes),
        )
        .await?;
        Ok(())
    }

    async fn add_labels(
        &self,
        repo: &RepoRef,
        number: u64,
        labels: &[String],
    ) -> Result<(), ProviderError> {
        if labels.is_empty() {
            return Ok(());
        }
        let what = format!("label {}/{}#{number}", repo.owner, repo.name);
        timed(
            &what,
            self.client
                .issues(&repo.owner, &repo.name)
                .add_labels(number, labels),
        )
        .await?;
        Ok(())
    }

    async fn remove_label(
        &self,
        repo: &RepoRef,
        number: u64,
        label: &str,
    ) -> Result<(), ProviderError> {
        let what = format!("unlabel {}/{}#{number}", repo.owner, repo.name);
        match timed(
            &what,
            self.client
                .issues(&repo.owner, &repo.name)
                .remove_label(number, label),
        )
        .await
        {
            Ok(_) | Err(ProviderError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
