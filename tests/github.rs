//! The worker's GitHub side through the real octocrab client against a local fake GitHub: comments
//! found by marker and edited in place, labels, rate limits honoured, tokens never leaked.

mod support;

use std::time::Duration;

use base64::Engine;
use codex_k8s::cli::Role;
use codex_k8s::config::Secret;
use codex_k8s::queue::{self, JobState, NewJob};
use codex_k8s::sealing::KeyRing;
use codex_k8s::tokens::{self, TokenKind};
use serde_json::json;
use support::app::TestService;
use support::fake_github::FakeGithub;
use support::{TestDb, job_in_state};
use uuid::Uuid;

const TOKEN: &str = "ghp_test_access_token_0123456789abcdef";

struct World {
    db: TestDb,
    github: FakeGithub,
    repository: Uuid,
    app: TestService,
}

async fn world() -> World {
    world_with(&[Role::Worker]).await
}

/// A connected repository with its token sealed, the fake GitHub, and a service with `roles`
/// (the fixtures' sender is a read_write member).
async fn world_with(roles: &[Role]) -> World {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = TestDb::migrated().await;
    let project = support::seed::project_with_repository(
        &db,
        "hello",
        json!({}),
        186853002,
        "Codertocat",
        "Hello-World",
    )
    .await;
    let user = support::seed::user(&db, "codertocat@example.com", "Codertocat").await;
    support::seed::member(&db, project, user, "read_write").await;
    let repository: Uuid =
        sqlx::query_scalar(include_str!("support/sql/repository_id_by_external.sql"))
            .bind(186853002_i64)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let keys_spec = format!(
        "k1:{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let keys: KeyRing = keys_spec.parse().unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    tokens::store(
        &mut conn,
        &keys,
        repository,
        TokenKind::Access,
        &Secret::new(TOKEN.to_owned()),
    )
    .await
    .unwrap();
    drop(conn);
    let github = FakeGithub::start().await;
    let url = github.url();
    let worker = TestService::start_with(
        &db.url,
        roles,
        &[
            ("CODEXK8S_TOKEN_KEYS", keys_spec.as_str()),
            ("CODEXK8S_GITHUB_API_URL", url.as_str()),
            ("CODEXK8S_PUBLIC_URL", "https://codex.example.com"),
        ],
    )
    .await;
    World {
        db,
        github,
        repository,
        app: worker,
    }
}

impl World {
    async fn comment_job(&self, number: i64, body: &str, labels: &[&str]) -> i64 {
        let job = NewJob::new(json!({
            "repository_id": self.repository, "target_kind": "issue", "target_number": number,
            "body": body, "add_labels": labels,
        }));
        queue::enqueue(&self.db.pool, &codex_k8s::worker::GITHUB_COMMENT, job)
            .await
            .unwrap()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_job_posts_once_with_its_labels_and_the_token_stays_secret() {
    let w = world().await;
    let id = w
        .comment_job(7, "Two stage labels at once: pick one.", &["need:input"])
        .await;
    job_in_state(&w.db.pool, id, JobState::Succeeded, Duration::from_secs(20)).await;
    let comments = w.github.comments("Codertocat/Hello-World", 7);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].starts_with("Two stage labels at once: pick one."));
    assert!(comments[0].contains(&format!("<!-- codex-k8s:job:{id} -->")));
    assert_eq!(
        w.github.labels("Codertocat/Hello-World", 7),
        vec!["need:input"]
    );
    let calls = w.github.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "the repository's token is used"
    );
    let audit: Vec<String> = sqlx::query_scalar(include_str!("support/sql/all_flow_payloads.sql"))
        .fetch_all(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "comment and labels audited: {audit:?}");
    assert!(audit.iter().all(|p| !p.contains(TOKEN)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_crash_edits_the_comment_it_already_posted() {
    let w = world().await;
    let id = w.comment_job(8, "Hello again", &[]).await;
    job_in_state(&w.db.pool, id, JobState::Succeeded, Duration::from_secs(20)).await;
    assert_eq!(w.github.comments("Codertocat/Hello-World", 8).len(), 1);
    // Run the same job again, as a rescued attempt would.
    sqlx::query(include_str!("support/sql/rerun_job.sql"))
        .bind(id)
        .execute(&w.db.pool)
        .await
        .unwrap();
    job_in_state(&w.db.pool, id, JobState::Succeeded, Duration::from_secs(20)).await;
    let comments = w.github.comments("Codertocat/Hello-World", 8);
    assert_eq!(comments.len(), 1, "edited in place, not posted twice");
    let calls = w.github.calls();
    let creates = calls
        .iter()
        .filter(|c| c.path.ends_with("/issues/8/comments") && c.method == "POST")
        .count();
    let edits = calls
        .iter()
        .filter(|c| c.path.contains("/issues/comments/"))
        .count();
    assert_eq!((creates, edits), (1, 1), "created once, then edited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_rate_limit_is_retried_after_retry_after_without_duplicates() {
    let w = world().await;
    w.github.refuse_next(
        403,
        Some(2),
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    );
    let started = std::time::Instant::now();
    let id = w
        .comment_job(9, "Rate limited hello", &["need:input"])
        .await;
    let job = job_in_state(&w.db.pool, id, JobState::Succeeded, Duration::from_secs(30)).await;
    assert_eq!(job.attempt, 2, "one refused attempt, one that worked");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited as GitHub asked"
    );
    assert_eq!(w.github.comments("Codertocat/Hello-World", 9).len(), 1);
    let posts = w
        .github
        .calls()
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/comments"))
        .count();
    assert_eq!(
        posts, 1,
        "the refused call was a read; the comment was created once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_leaves_one_eyes_reaction() {
    let w = world().await;
    for _ in 0..2 {
        let job = NewJob::new(json!({ "repository_id": w.repository, "target_number": 12 }));
        let id = queue::enqueue(&w.db.pool, &codex_k8s::worker::GITHUB_ACKNOWLEDGE, job)
            .await
            .unwrap()
            .unwrap();
        job_in_state(&w.db.pool, id, JobState::Succeeded, Duration::from_secs(20)).await;
    }
    assert_eq!(
        w.github.reactions("Codertocat/Hello-World", 12),
        vec!["eyes"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_one_status_comment_edited_as_its_status_changes() {
    let w = world_with(&Role::ALL).await;
    let (app, github) = (&w.app, &w.github);
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/github-webhooks/issues.labeled.payload.json");
    let mut payload: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    payload["label"]["name"] = json!("run:intake");
    payload["issue"]["labels"] = json!([{ "name": "run:intake" }]);
    payload["issue"]["number"] = json!(5);
    let reply = app
        .post_webhook(
            "issues",
            &Uuid::new_v4().to_string(),
            &serde_json::to_vec(&payload).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    // The cluster is unreachable here, so the run stays queued or starting; then the issue closes.
    support::eventually(Duration::from_secs(20), "a status comment", || async {
        (!github.comments("Codertocat/Hello-World", 5).is_empty()).then_some(())
    })
    .await;
    payload["action"] = json!("closed");
    payload.as_object_mut().unwrap().remove("label");
    let reply = app
        .post_webhook(
            "issues",
            &Uuid::new_v4().to_string(),
            &serde_json::to_vec(&payload).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let body = support::eventually(
        Duration::from_secs(20),
        "the comment to say canceled",
        || async {
            let comments = github.comments("Codertocat/Hello-World", 5);
            comments
                .iter()
                .find(|c| c.contains("**canceled**"))
                .cloned()
        },
    )
    .await;
    assert_eq!(
        github.comments("Codertocat/Hello-World", 5).len(),
        1,
        "one status comment, edited in place"
    );
    assert!(
        body.contains("Stage: `intake`") && body.contains("Agent: `pm`"),
        "{body}"
    );
    assert!(body.contains("https://codex.example.com/runs/"), "{body}");
    assert!(body.contains("<!-- codex-k8s:run:"), "{body}");
    assert_eq!(github.reactions("Codertocat/Hello-World", 5), vec!["eyes"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labels_job_moves_labels_and_tolerates_a_missing_one() {
    let w = world().await;
    let first = w
        .comment_job(14, "Starting.", &["run:dev", "state:blocked"])
        .await;
    job_in_state(
        &w.db.pool,
        first,
        JobState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    let job = NewJob::new(json!({
        "repository_id": w.repository, "target_number": 14,
        "add": ["state:in-review"], "remove": ["run:dev", "not-there"],
    }));
    let id = queue::enqueue(&w.db.pool, &codex_k8s::worker::GITHUB_LABELS, job)
        .await
        .unwrap()
        .unwrap();
    job_in_state(&w.db.pool, id, JobState::Succeeded, Duration::from_secs(20)).await;
    assert_eq!(
        w.github.labels("Codertocat/Hello-World", 14),
        vec!["state:blocked", "state:in-review"]
    );
}
