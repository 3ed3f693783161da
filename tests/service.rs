//! The assembled service: `/healthz`, `/readyz`, `/metrics` and graceful stop, in process.

mod support;

use std::time::{Duration, Instant};

use codex_k8s::cli::Role;
use codex_k8s::queue::{self, JobKind, NewJob};
use serde_json::{Value, json};
use support::app::TestService;
use support::{TestDb, eventually};

#[tokio::test]
async fn healthy_and_ready_on_a_migrated_database() {
    let db = TestDb::migrated().await;
    let service = TestService::start(&db.url, &Role::ALL).await;
    let (status, body) = service.get("/healthz").await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"status": "ok"}))
    );
    let (status, body) = service.get("/readyz").await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"status": "ready"}))
    );
    let took = service.stop().await;
    assert!(
        took < Duration::from_secs(5),
        "an idle service stops promptly: {took:?}"
    );
}

#[tokio::test]
async fn not_ready_until_migrations_are_applied() {
    let db = TestDb::empty().await;
    let service = TestService::start(&db.url, &[Role::Gateway]).await;
    let (status, body) = service.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("migrations not applied") && body.contains("codex-k8s migrate"),
        "{body}"
    );
    codex_k8s::store::migrations::run(&db.pool).await.unwrap();
    let (status, _) = service.get("/readyz").await;
    assert_eq!(status, 200);
    service.stop().await;
}

#[tokio::test]
async fn alive_but_not_ready_while_the_database_is_unreachable() {
    // Nothing listens on port 1: the database is "down".
    let service = TestService::start("postgres://postgres@127.0.0.1:1/none", &Role::ALL).await;
    let (status, _) = service.get("/healthz").await;
    assert_eq!(status, 200, "liveness never depends on the database");
    let asked = Instant::now();
    let (status, body) = service.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("not_ready"), "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "readiness answers quickly: {:?}",
        asked.elapsed()
    );
    let (status, body) = service.get("/metrics").await;
    assert_eq!(status, 200, "metrics still render: {body}");
    assert!(
        body.contains("codexk8s_queue_store_errors_total{operation=\"metrics_depth\"}"),
        "{body}"
    );
    service.stop().await;
}

#[tokio::test]
async fn metrics_show_queue_depth_leadership_and_pool() {
    let db = TestDb::migrated().await;
    const PENDING: JobKind = JobKind::new("test.pending");
    for _ in 0..3 {
        queue::enqueue(&db.pool, &PENDING, NewJob::new(json!({})))
            .await
            .unwrap();
    }
    let service = TestService::start(&db.url, &Role::ALL).await;
    let body = eventually(
        Duration::from_secs(10),
        "the maintenance leader gauge",
        || async {
            let (_, body) = service.get("/metrics").await;
            body.contains("codexk8s_leader{lease=\"queue-maintenance\"} 1")
                .then_some(body)
        },
    )
    .await;
    assert!(
        body.contains("codexk8s_jobs{kind=\"test.pending\",state=\"available\"} 3"),
        "{body}"
    );
    assert!(
        body.contains("codexk8s_db_pool_max_connections 20"),
        "{body}"
    );
    assert!(
        body.contains("codexk8s_db_pool_connections{state=\"in_use\"}"),
        "{body}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    service.stop().await;
}
