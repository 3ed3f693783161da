//! Runs on Kubernetes: 1,000 `run:intake` deliveries across 50 projects offered at a steady 20/s to
//! one service with all roles, against the test fake API server (answers at once, completes each pod
//! 100 ms after creating it). Prints webhook accepted → Job created latency and the Kubernetes API
//! requests the service made, grouped by kind, per run and per resync tick.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use codex_k8s::cli::Role;
use codex_k8s::config::Config;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Args, fresh_database, ms, percentiles};

#[allow(dead_code)] // the benchmark uses a part of the tests' fake
#[path = "../tests/support/fake_k8s.rs"]
mod fake_k8s;

const SECRET: &str = "bench-webhook-secret";
const PROJECTS: i64 = 50;
const RUNS: u64 = 1_000;
const RATE: u64 = 20;
const RESYNC_EVERY: Duration = Duration::from_secs(5);

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = fresh_database(&args.database_url).await?;
    let user: uuid::Uuid = sqlx::query_scalar(include_str!("runtime_seed_user.sql"))
        .fetch_one(&db.pool)
        .await?;
    for p in 0..PROJECTS {
        sqlx::query_scalar::<_, uuid::Uuid>(include_str!("runtime_seed_project.sql"))
            .bind(format!("bench-{p}"))
            .bind(10_000 + p)
            .bind(user)
            .fetch_one(&db.pool)
            .await?;
    }
    let fake = fake_k8s::FakeKube::start().await;
    fake.insert(
        "namespaces",
        json!({ "metadata": { "name": "codex-k8s-runs" } }),
    );
    fake.complete_pods_after(Some(Duration::from_millis(100)));
    let dir = std::env::temp_dir().join(format!("codex-k8s-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = fake.write_kubeconfig(&dir, "default").display().to_string();
    let resync = format!("{}s", RESYNC_EVERY.as_secs());
    let env: std::collections::HashMap<String, String> = [
        ("CODEXK8S_DATABASE_URL", db.url.as_str()),
        ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0"),
        ("CODEXK8S_GITHUB_WEBHOOK_SECRETS", SECRET),
        ("CODEXK8S_LOG_FILTER", "warn"),
        ("KUBECONFIG", kubeconfig.as_str()),
        ("CODEXK8S_RUNTIME_RESYNC_INTERVAL", resync.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_env(&env).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = CancellationToken::new();
    let service = codex_k8s::serve::start(&config, &Role::ALL, stop.clone()).await?;
    let url = format!("http://{}/api/v1/webhooks/github", service.http_addr);
    let fixture: Value = serde_json::from_slice(&std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/github-webhooks/issues.labeled.payload.json"),
    )?)?;
    let http = reqwest::Client::new();
    println!(
        "runtime: {RUNS} run:intake deliveries across {PROJECTS} projects at {RATE}/s, fake API server completing pods after 100 ms"
    );
    fake.reset_requests();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / RATE as u32);
    let mut refused = 0;
    for n in 0..RUNS {
        ticker.tick().await;
        let mut payload = fixture.clone();
        payload["label"]["name"] = json!("run:intake");
        payload["issue"]["labels"] = json!([{ "name": "run:intake" }]);
        payload["issue"]["number"] = json!(n + 1);
        payload["repository"]["id"] = json!(10_000 + (n as i64 % PROJECTS));
        let body = serde_json::to_vec(&payload)?;
        let reply = http
            .post(&url)
            .header("X-GitHub-Event", "issues")
            .header("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string())
            .header(
                "X-Hub-Signature-256",
                codex_k8s::gateway::sign(SECRET, &body),
            )
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        if reply.status() != 202 {
            refused += 1;
        }
    }
    let offered_for = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (total, succeeded) = loop {
        let (total, succeeded): (i64, i64) = sqlx::query_as(include_str!("runtime_run_states.sql"))
            .fetch_one(&db.pool)
            .await?;
        if succeeded >= RUNS as i64 || Instant::now() > deadline {
            break (total, succeeded);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    let requests = fake.requests();
    stop.cancel();
    service.wait().await;
    let _ = std::fs::remove_dir_all(&dir);

    let latencies: Vec<f64> = sqlx::query_scalar(include_str!("runtime_job_created_latency.sql"))
        .fetch_all(&db.pool)
        .await?;
    let p = percentiles(
        latencies
            .iter()
            .map(|s| Duration::from_secs_f64(s.max(0.0)))
            .collect(),
    );
    println!(
        "offered in {:.1} s ({refused} refused); {total} runs, {succeeded} succeeded within {:.1} s",
        offered_for.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "webhook accepted → Job created ({} runs): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (targets p50 ≤ 50 ms, p99 ≤ 250 ms)",
        latencies.len(),
        ms(p.p50),
        ms(p.p99),
        ms(p.max)
    );
    let ticks = (elapsed.as_secs_f64() / RESYNC_EVERY.as_secs_f64())
        .floor()
        .max(1.0);
    println!(
        "Kubernetes API requests: {} in all, {:.2} per run; by kind (per run, per resync tick of {} s):",
        requests.len(),
        requests.len() as f64 / succeeded.max(1) as f64,
        RESYNC_EVERY.as_secs()
    );
    for (kind, count) in group(&requests) {
        println!(
            "  {count:>6}  {:>6.2}/run  {:>6.2}/tick  {kind}",
            count as f64 / succeeded.max(1) as f64,
            count as f64 / ticks
        );
    }
    db.drop_now(&args.database_url).await?;
    Ok(())
}

/// "METHOD /path?query" → "METHOD /path-shape [watch]" with object names replaced by `{name}`.
fn group(requests: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in requests {
        let (method, target) = request.split_once(' ').unwrap_or(("?", request));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segments: Vec<&str> = path.split('/').collect();
        let shape: Vec<String> = segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let named =
                    i > 0 && matches!(segments[i - 1], "namespaces" | "jobs" | "secrets" | "pods");
                if named && *s != "codex-k8s-runs" {
                    "{name}".to_owned()
                } else {
                    (*s).to_owned()
                }
            })
            .collect();
        let watch = if query.contains("watch=true") {
            " (watch)"
        } else {
            ""
        };
        *counts
            .entry(format!("{method} {}{watch}", shape.join("/")))
            .or_insert(0) += 1;
    }
    counts
}
