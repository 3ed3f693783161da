//! The assembled service: `/healthz`, `/readyz`, `/metrics` and graceful stop, in process.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codex_k8s::cli::Role;
use codex_k8s::config::Config;
use codex_k8s::queue::{self, JobKind, NewJob};
use codex_k8s::serve::{self, Running};
use serde_json::{Value, json};
use support::{TestDb, eventually};
use tokio_util::sync::CancellationToken;

struct TestService {
    running: Running,
    stop: CancellationToken,
    base: String,
    http: reqwest::Client,
}

impl TestService {
    async fn start(database_url: &str, roles: &[Role]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let env: HashMap<String, String> = [
            ("CODEXK8S_DATABASE_URL", database_url),
            ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0"),
            ("CODEXK8S_DATABASE_ACQUIRE_TIMEOUT", "1s"),
            ("CODEXK8S_LEADER_LEASE_TTL", "1s"),
            ("CODEXK8S_SHUTDOWN_GRACE", "2s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = Config::from_env(&env).expect("valid test configuration");
        let stop = CancellationToken::new();
        let running = serve::start(&config, roles, stop.clone())
            .await
            .expect("service starts");
        let base = format!("http://{}", running.http_addr);
        Self {
            running,
            stop,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }

    async fn stop(self) -> Duration {
        let started = Instant::now();
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.running.wait())
            .await
            .expect("service stops in time");
        started.elapsed()
    }
}

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
