//! Webhook → label policy → run, through the real router, the real queue and a real database.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use codex_k8s::cli::Role;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::TestService;
use support::{TestDb, eventually};
use uuid::Uuid;

const REPO_ID: i64 = 186853002; // Codertocat/Hello-World in the fixtures
const SENDER: &str = "Codertocat";

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/github-webhooks")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A fixture with its triggering label and the item's labels replaced.
fn labeled(name: &str, label: &str, labels: &[&str]) -> Value {
    let mut payload = fixture(name);
    let item = if payload.get("issue").is_some() {
        "issue"
    } else {
        "pull_request"
    };
    payload["label"]["name"] = json!(label);
    payload[item]["labels"] = json!(
        labels
            .iter()
            .map(|l| json!({ "name": l }))
            .collect::<Vec<_>>()
    );
    payload
}

struct World {
    db: TestDb,
    app: TestService,
}

/// A project with the fixtures' repository connected and `SENDER` as a member with `role`.
async fn world(role: Option<&str>) -> World {
    let db = TestDb::migrated().await;
    let project = support::seed::project_with_repository(
        &db,
        "hello",
        json!({}),
        REPO_ID,
        "Codertocat",
        "Hello-World",
    )
    .await;
    if let Some(role) = role {
        let user = support::seed::user(&db, "codertocat@example.com", SENDER).await;
        support::seed::member(&db, project, user, role).await;
    }
    // Gateway and control only: these tests look at runs as control leaves them (pending).
    let app = TestService::start(&db.url, &[Role::Gateway, Role::Control]).await;
    World { db, app }
}

impl World {
    /// Delivers `payload` and waits until control has processed it; returns (outcome, reason).
    async fn deliver(&self, event: &str, payload: &Value) -> (String, Option<String>) {
        let delivery = Uuid::new_v4().to_string();
        let reply = self
            .app
            .post_webhook(event, &delivery, &serde_json::to_vec(payload).unwrap())
            .await;
        assert!(reply.status == 202 || reply.status == 200, "{}", reply.body);
        self.outcome_of(&delivery).await
    }

    async fn outcome_of(&self, delivery: &str) -> (String, Option<String>) {
        eventually(
            Duration::from_secs(15),
            "the event to be processed",
            || async {
                let (state, outcome, reason): (String, Option<String>, Option<String>) =
                    sqlx::query_as(include_str!("support/sql/webhook_outcome.sql"))
                        .bind(delivery)
                        .fetch_one(&self.db.pool)
                        .await
                        .ok()?;
                (state == "processed").then(|| (outcome.unwrap_or_default(), reason))
            },
        )
        .await
    }
}

#[derive(sqlx::FromRow, Debug)]
struct Run {
    id: Uuid,
    agent_key: String,
    stage: Option<String>,
    trigger_label: String,
    trigger_kind: String,
    revise: bool,
    target_kind: String,
    target_number: i32,
    status: String,
    runtime_mode: String,
    model: Option<String>,
    reasoning_effort: Option<String>,
    correlation_id: String,
}

async fn runs(pool: &PgPool) -> Vec<Run> {
    sqlx::query_as(include_str!("support/sql/runs_of_repository.sql"))
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn jobs_of(pool: &PgPool, kind: &str) -> Vec<Value> {
    sqlx::query_scalar(include_str!("support/sql/jobs_of_kind.sql"))
        .bind(kind)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn flow_types(pool: &PgPool, correlation: &str) -> Vec<String> {
    sqlx::query_scalar(include_str!("support/sql/flow_event_types.sql"))
        .bind(correlation)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_run_dev_label_creates_one_pending_run_and_its_launch_job() {
    let w = world(Some("read_write")).await;
    let payload = labeled(
        "issues.labeled.payload.json",
        "run:dev",
        &["run:dev", "[ai-reasoning-high]"],
    );
    let (outcome, run_id) = w.deliver("issues", &payload).await;
    assert_eq!(outcome, "run_created");
    let runs = runs(&w.db.pool).await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(Some(run.id.to_string()), run_id);
    assert_eq!(
        (
            run.agent_key.as_str(),
            run.stage.as_deref(),
            run.trigger_kind.as_str()
        ),
        ("dev", Some("dev"), "stage")
    );
    assert_eq!(
        (run.trigger_label.as_str(), run.revise, run.status.as_str()),
        ("run:dev", false, "pending")
    );
    assert_eq!(
        (
            run.target_kind.as_str(),
            run.target_number,
            run.runtime_mode.as_str()
        ),
        ("issue", 1, "full-env")
    );
    assert_eq!(
        (run.model.as_deref(), run.reasoning_effort.as_deref()),
        (Some("gpt-5-codex"), Some("high"))
    );
    assert_eq!(
        jobs_of(&w.db.pool, "launch_run").await,
        vec![json!({ "run_id": run.id })]
    );
    let acknowledgements = jobs_of(&w.db.pool, "github_acknowledge").await;
    assert_eq!(
        acknowledgements.len(),
        1,
        "the trigger is acknowledged on GitHub"
    );
    assert_eq!(acknowledgements[0]["target_number"], 1);
    assert_eq!(
        flow_types(&w.db.pool, &run.correlation_id).await,
        ["run.created", "webhook.processed"]
    );
    w.app.stop().await;
}

#[tokio::test]
async fn the_same_trigger_twice_and_a_pr_burst_give_one_run_each() {
    let w = world(Some("admin")).await;
    let payload = labeled("issues.labeled.payload.json", "run:plan", &["run:plan"]);
    assert_eq!(w.deliver("issues", &payload).await.0, "run_created");
    assert_eq!(
        w.deliver("issues", &payload).await,
        ("ignored".to_owned(), Some("run_already_active".to_owned()))
    );

    // labeled, opened and ready_for_review for one PR within a second: one reviewer run.
    let delivered: Vec<String> = (0..3).map(|_| Uuid::new_v4().to_string()).collect();
    let bodies = [
        (
            "pull_request",
            labeled(
                "pull_request.labeled.payload.json",
                "need:reviewer",
                &["need:reviewer"],
            ),
        ),
        ("pull_request", fixture("pull_request.opened.payload.json")),
        (
            "pull_request",
            fixture("pull_request.ready_for_review.payload.json"),
        ),
    ];
    for ((event, body), delivery) in bodies.iter().zip(&delivered) {
        w.app
            .post_webhook(event, delivery, &serde_json::to_vec(body).unwrap())
            .await;
    }
    for delivery in &delivered {
        w.outcome_of(delivery).await;
    }
    let runs = runs(&w.db.pool).await;
    let kinds: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r.trigger_kind.as_str(), r.agent_key.as_str()))
        .collect();
    assert_eq!(kinds, [("stage", "em"), ("reviewer", "reviewer")]);
    assert_eq!(jobs_of(&w.db.pool, "launch_run").await.len(), 2);
    w.app.stop().await;
}

#[tokio::test]
async fn guards_are_recorded_with_their_reason() {
    let payload = labeled("issues.labeled.payload.json", "run:dev", &["run:dev"]);
    let w = world(Some("read")).await;
    assert_eq!(
        w.deliver("issues", &payload).await.1.as_deref(),
        Some("sender_role_read_not_permitted")
    );
    w.app.stop().await;
    let w = world(None).await;
    assert_eq!(
        w.deliver("issues", &payload).await.1.as_deref(),
        Some("sender_not_allowed")
    );
    let mut from_bot = payload.clone();
    from_bot["sender"]["type"] = json!("Bot");
    assert_eq!(
        w.deliver("issues", &from_bot).await.1.as_deref(),
        Some("sender_not_human")
    );
    let mut elsewhere = payload.clone();
    elsewhere["repository"]["id"] = json!(42);
    assert_eq!(
        w.deliver("issues", &elsewhere).await.1.as_deref(),
        Some("repository_not_connected")
    );
    assert!(runs(&w.db.pool).await.is_empty());
    w.app.stop().await;
}

#[tokio::test]
async fn conflicting_labels_start_nothing_and_queue_an_explaining_comment() {
    let w = world(Some("read_write")).await;
    let payload = labeled(
        "issues.labeled.payload.json",
        "run:dev",
        &["run:dev", "run:qa"],
    );
    assert_eq!(
        w.deliver("issues", &payload).await,
        ("refused".to_owned(), Some("trigger_conflict".to_owned()))
    );
    assert!(runs(&w.db.pool).await.is_empty());
    let comments = jobs_of(&w.db.pool, "github_comment").await;
    assert_eq!(comments.len(), 1);
    assert_eq!(
        (
            comments[0]["target_kind"].clone(),
            comments[0]["target_number"].clone()
        ),
        (json!("issue"), json!(1))
    );
    assert!(comments[0]["body"].as_str().unwrap().contains("run:qa"));
    w.app.stop().await;
}

#[tokio::test]
async fn closing_the_issue_cancels_its_active_run() {
    let w = world(Some("read_write")).await;
    let payload = labeled("issues.labeled.payload.json", "run:dev", &["run:dev"]);
    assert_eq!(w.deliver("issues", &payload).await.0, "run_created");
    let mut closed = fixture("issues.labeled.payload.json");
    closed["action"] = json!("closed");
    assert_eq!(
        w.deliver("issues", &closed).await,
        ("canceled".to_owned(), Some("1 active run(s)".to_owned()))
    );
    assert_eq!(runs(&w.db.pool).await[0].status, "canceled");
    // The slot is free again: a new trigger starts a new run.
    assert_eq!(w.deliver("issues", &payload).await.0, "run_created");
    w.app.stop().await;
}

#[tokio::test]
async fn every_fixture_gets_the_right_recorded_outcome() {
    let w = world(Some("read_write")).await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github-webhooks");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names.iter().filter(|n| n.ends_with(".json")) {
        let event = name.split('.').next().unwrap();
        let action = name.split('.').nth(1).unwrap();
        let payload = fixture(name);
        let got = w.deliver(event, &payload).await;
        let expected: (&str, &str) = match (event, action) {
            ("ping", _) => ("ignored", "ping"),
            ("push" | "label", _) => ("ignored", "event_not_used"),
            ("pull_request_review", "submitted") => ("ignored", "review_not_changes_requested"),
            ("issues" | "pull_request", "closed") => ("canceled", "0 active run(s)"),
            // Every other fixture carries only a `bug` label, or no label change at all.
            _ => ("ignored", "not_a_trigger"),
        };
        assert_eq!(
            (got.0.as_str(), got.1.as_deref()),
            (expected.0, Some(expected.1)),
            "{name}"
        );
    }
    assert!(runs(&w.db.pool).await.is_empty());
    w.app.stop().await;
}

#[tokio::test]
async fn a_thousand_concurrent_copies_of_a_trigger_delivery_make_at_most_one_run() {
    let w = std::sync::Arc::new(world(Some("read_write")).await);
    let body = std::sync::Arc::new(
        serde_json::to_vec(&labeled(
            "issues.labeled.payload.json",
            "run:dev",
            &["run:dev"],
        ))
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (w, body) = (w.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            w.app
                .post_webhook("issues", "one-delivery", &body)
                .await
                .status
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        if t.await.unwrap() == 202 {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(w.outcome_of("one-delivery").await.0, "run_created");
    assert_eq!(runs(&w.db.pool).await.len(), 1);
    assert_eq!(jobs_of(&w.db.pool, "launch_run").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_processed_together_each_get_their_own_outcome_and_a_bad_one_fails_alone() {
    let w = std::sync::Arc::new(world(Some("read_write")).await);
    // Issue number 0 passes the policy but the database refuses the run row (target_number > 0):
    // it fails its own job while the deliveries processed beside it are recorded normally.
    let mut tasks = Vec::new();
    for number in 0..30 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let mut payload = labeled("issues.labeled.payload.json", "run:dev", &["run:dev"]);
            payload["issue"]["number"] = json!(number);
            let delivery = format!("burst-{number}");
            let reply = w
                .app
                .post_webhook("issues", &delivery, &serde_json::to_vec(&payload).unwrap())
                .await;
            assert_eq!(reply.status, 202, "{}", reply.body);
            delivery
        }));
    }
    let deliveries: Vec<String> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for delivery in &deliveries[1..] {
        assert_eq!(w.outcome_of(delivery).await.0, "run_created", "{delivery}");
    }
    let runs = runs(&w.db.pool).await;
    let mut numbers: Vec<i32> = runs.iter().map(|r| r.target_number).collect();
    numbers.sort();
    assert_eq!(numbers, (1..30).collect::<Vec<_>>());
    for run in &runs {
        assert_eq!(run.correlation_id, format!("burst-{}", run.target_number));
        let job: i64 = sqlx::query_scalar(include_str!("support/sql/job_by_unique_key.sql"))
            .bind("process_event")
            .bind(format!("webhook:github:{}", run.correlation_id))
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
        let job = support::job_in_state(
            &w.db.pool,
            job,
            codex_k8s::queue::JobState::Succeeded,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(
            job.attempt, 1,
            "the bad delivery did not cost its neighbours an attempt"
        );
        assert_eq!(
            flow_types(&w.db.pool, &run.correlation_id).await,
            vec!["run.created", "webhook.processed"]
        );
    }
    let poison: i64 = sqlx::query_scalar(include_str!("support/sql/job_by_unique_key.sql"))
        .bind("process_event")
        .bind("webhook:github:burst-0")
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    let job = eventually(
        Duration::from_secs(10),
        "the bad delivery's attempt to fail",
        || async {
            let job = codex_k8s::queue::get(&w.db.pool, poison).await.unwrap();
            (job.last_error.is_some()).then_some(job)
        },
    )
    .await;
    assert!(
        job.last_error
            .as_deref()
            .unwrap()
            .contains("agent_runs_target_number_check"),
        "{:?}",
        job.last_error
    );
    let state: (String, Option<String>, Option<String>) =
        sqlx::query_as(include_str!("support/sql/webhook_outcome.sql"))
            .bind("burst-0")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(
        state.0, "received",
        "nothing of the bad delivery was committed"
    );
    assert!(flow_types(&w.db.pool, "burst-0").await.is_empty());
}
