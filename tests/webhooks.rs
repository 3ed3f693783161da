//! `POST /api/v1/webhooks/github` through the real router into a real database.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use codex_k8s::cli::Role;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::TestDb;
use support::app::{OLD_WEBHOOK_SECRET, TestService, WEBHOOK_SECRET, github_headers};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github-webhooks")
}

/// (event name from the file name, file name, bytes) for every fixture.
fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let mut all: Vec<(String, String, Vec<u8>)> = std::fs::read_dir(fixtures_dir())
        .expect("../shared/fixtures/github-webhooks exists beside the checkout")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let event = name.split('.').next().unwrap().to_owned();
            (event, name, std::fs::read(&p).unwrap())
        })
        .collect();
    all.sort();
    assert!(
        all.len() >= 50,
        "expected the full fixture set, found {}",
        all.len()
    );
    all
}

#[derive(sqlx::FromRow, Debug)]
struct StoredEvent {
    event_name: String,
    action: Option<String>,
    processing_state: String,
    outcome: Option<String>,
    outcome_reason: Option<String>,
    payload: Value,
}

async fn stored(pool: &PgPool, delivery: &str) -> Option<StoredEvent> {
    sqlx::query_as(include_str!("support/sql/webhook_event_by_delivery.sql"))
        .bind(delivery)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn process_event_jobs(pool: &PgPool) -> i64 {
    count(
        pool,
        include_str!("support/sql/count_process_event_jobs.sql"),
    )
    .await
}

async fn webhook_rows(pool: &PgPool) -> i64 {
    count(pool, include_str!("support/sql/count_webhook_events.sql")).await
}

#[tokio::test]
async fn every_fixture_is_stored_and_answered_as_its_event_deserves() {
    let db = TestDb::migrated().await;
    let app = TestService::start(&db.url, &[Role::Gateway]).await;
    let mut used = 0;
    for (event, name, body) in fixtures() {
        let delivery = uuid::Uuid::new_v4().to_string();
        let reply = app.post_webhook(&event, &delivery, &body).await;
        let row = stored(&db.pool, &delivery)
            .await
            .unwrap_or_else(|| panic!("{name}: not stored"));
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(row.event_name, event, "{name}");
        assert_eq!(row.action.as_deref(), parsed["action"].as_str(), "{name}");
        assert_eq!(row.payload, parsed, "{name}: payload stored as received");
        match event.as_str() {
            "issues"
            | "pull_request"
            | "pull_request_review"
            | "issue_comment"
            | "installation"
            | "installation_repositories" => {
                used += 1;
                assert_eq!(reply.status, 202, "{name}: {}", reply.body);
                assert_eq!(
                    reply.json(),
                    json!({"status": "accepted", "delivery_id": delivery})
                );
                assert_eq!(
                    (row.processing_state.as_str(), row.outcome),
                    ("received", None),
                    "{name}"
                );
            }
            "ping" => {
                assert_eq!(
                    (reply.status, reply.json()["status"].clone()),
                    (200, json!("pong")),
                    "{name}"
                );
                assert_eq!(row.outcome_reason.as_deref(), Some("ping"));
            }
            _ => {
                assert_eq!(reply.status, 200, "{name}: {}", reply.body);
                assert_eq!(reply.json()["status"], "ignored", "{name}");
                assert_eq!(
                    (row.processing_state.as_str(), row.outcome.as_deref()),
                    ("processed", Some("ignored")),
                    "{name}"
                );
                assert_eq!(
                    row.outcome_reason.as_deref(),
                    Some("event_not_used"),
                    "{name}"
                );
            }
        }
    }
    assert_eq!(
        process_event_jobs(&db.pool).await,
        used,
        "one process_event job per used event"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_redelivery_is_answered_duplicate_and_stored_once() {
    let db = TestDb::migrated().await;
    let app = TestService::start(&db.url, &[Role::Gateway]).await;
    let body = std::fs::read(fixtures_dir().join("issues.labeled.payload.json")).unwrap();
    let first = app.post_webhook("issues", "delivery-1", &body).await;
    let again = app.post_webhook("issues", "delivery-1", &body).await;
    assert_eq!(first.status, 202);
    assert_eq!(
        (again.status, again.json()["status"].clone()),
        (200, json!("duplicate"))
    );
    assert_eq!(webhook_rows(&db.pool).await, 1);
    assert_eq!(process_event_jobs(&db.pool).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_thousand_concurrent_copies_of_one_delivery_store_one_event() {
    let db = TestDb::migrated().await;
    let app = std::sync::Arc::new(TestService::start(&db.url, &[Role::Gateway]).await);
    let body = std::sync::Arc::new(
        std::fs::read(fixtures_dir().join("issues.labeled.payload.json")).unwrap(),
    );
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (app, body) = (app.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            app.post_webhook("issues", "same-delivery", &body)
                .await
                .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "exactly one is accepted"
    );
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 200),
        "{statuses:?}"
    );
    assert_eq!(webhook_rows(&db.pool).await, 1);
    assert_eq!(process_event_jobs(&db.pool).await, 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let db = TestDb::migrated().await;
    let app = TestService::start(&db.url, &[Role::Gateway]).await;
    let body = std::fs::read(fixtures_dir().join("issues.labeled.payload.json")).unwrap();
    let good = || github_headers("issues", "bad-input", WEBHOOK_SECRET, &body);
    let without = |name: &str| {
        good()
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect::<Vec<_>>()
    };
    let replacing = |name: &'static str, value: String| {
        let mut h = without(name);
        h.push((name, value));
        h
    };
    let truncated = body[..body.len() / 2].to_vec();
    // Valid JSON that PostgreSQL's jsonb refuses (a NUL character).
    let nul = br#"{"action":"opened","zen":"\u0000"}"#.to_vec();
    let not_json = b"payload=%7B%7D".to_vec();
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Headers, Vec<u8>, u16, &str)> = vec![
        (
            "no event header",
            without("X-GitHub-Event"),
            body.clone(),
            400,
            "X-GitHub-Event",
        ),
        (
            "no delivery header",
            without("X-GitHub-Delivery"),
            body.clone(),
            400,
            "X-GitHub-Delivery",
        ),
        (
            "no signature header",
            without("X-Hub-Signature-256"),
            body.clone(),
            400,
            "X-Hub-Signature-256",
        ),
        (
            "malformed signature",
            replacing("X-Hub-Signature-256", "sha1=abc".into()),
            body.clone(),
            400,
            "sha256=",
        ),
        (
            "wrong secret",
            github_headers("issues", "bad-input", "not-the-secret", &body),
            body.clone(),
            401,
            "bad_signature",
        ),
        (
            "signature of other bytes",
            github_headers("issues", "bad-input", WEBHOOK_SECRET, b"{}"),
            body.clone(),
            401,
            "bad_signature",
        ),
        (
            "truncated body",
            github_headers("issues", "bad-input", WEBHOOK_SECRET, &truncated),
            truncated.clone(),
            400,
            "not valid JSON",
        ),
        (
            "not JSON",
            github_headers("issues", "bad-input", WEBHOOK_SECRET, &not_json),
            not_json.clone(),
            400,
            "not valid JSON",
        ),
        (
            "JSON that jsonb cannot hold",
            github_headers("issues", "bad-input", WEBHOOK_SECRET, &nul),
            nul.clone(),
            400,
            "cannot be stored",
        ),
        (
            "wrong content type",
            replacing("Content-Type", "application/x-www-form-urlencoded".into()),
            body.clone(),
            400,
            "Content-Type",
        ),
    ];
    for (what, headers, body, status, mentions) in cases {
        let reply = app.post_webhook_raw(&headers, body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        let error = &reply.json()["error"];
        assert!(error["code"].is_string(), "{what}: {}", reply.body);
        let text = format!("{} {}", error["code"], error["message"]);
        assert!(text.contains(mentions), "{what}: {text}");
    }
    // 26 MiB: over GitHub's 25 MiB cap.
    let huge = vec![b' '; 26 * 1024 * 1024];
    let reply = app
        .post_webhook_raw(
            &github_headers("issues", "huge", WEBHOOK_SECRET, &huge),
            huge,
        )
        .await;
    assert_eq!(reply.status, 413);
    assert_eq!(webhook_rows(&db.pool).await, 0, "nothing stored");
    assert_eq!(process_event_jobs(&db.pool).await, 0);
    // The service is still healthy after all that.
    assert_eq!(app.post_webhook("issues", "fine", &body).await.status, 202);
    app.stop().await;
}

#[tokio::test]
async fn the_previous_secret_still_verifies_during_rotation() {
    let db = TestDb::migrated().await;
    let app = TestService::start(&db.url, &[Role::Gateway]).await;
    let body = std::fs::read(fixtures_dir().join("issues.opened.payload.json")).unwrap();
    let reply = app
        .post_webhook_raw(
            &github_headers("issues", "rotated", OLD_WEBHOOK_SECRET, &body),
            body,
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    app.stop().await;
}

#[tokio::test]
async fn database_down_answers_503_in_time_and_the_redelivery_then_succeeds() {
    let db = TestDb::migrated().await;
    // The gateway talks to the database through a proxy the test can cut.
    let proxy = support::proxy::TcpProxy::start(&db.url).await;
    let app = TestService::start(&proxy.database_url(&db.url), &[Role::Gateway]).await;
    let body = std::fs::read(fixtures_dir().join("issues.labeled.payload.json")).unwrap();
    proxy.cut();
    let asked = Instant::now();
    let reply = app.post_webhook("issues", "during-outage", &body).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        asked.elapsed()
    );
    proxy.restore();
    let reply = support::eventually(
        Duration::from_secs(20),
        "the redelivery to be accepted",
        || async {
            let reply = app.post_webhook("issues", "during-outage", &body).await;
            (reply.status == 202).then_some(reply)
        },
    )
    .await;
    assert_eq!(reply.json()["status"], "accepted");
    assert_eq!(webhook_rows(&db.pool).await, 1);
    app.stop().await;
}
