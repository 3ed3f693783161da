//! Webhook ingress figures: signed `issues.labeled` deliveries (the 12 KB fixture) over loopback
//! against one in-process service with all roles, beside pgbench committing the same event and job
//! rows per transaction.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use codex_k8s::cli::Role;
use codex_k8s::config::Config;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Args, fresh_database, ms, percentiles, pgbench_run};

const SECRET: &str = "bench-webhook-secret";
const CONCURRENCY: usize = 32;
const STEADY_RATE: u64 = 500;
const WINDOW: Duration = Duration::from_secs(10);

struct Target {
    url: String,
    body: Arc<Vec<u8>>,
    signature: String,
    http: reqwest::Client,
}

impl Target {
    /// Posts one delivery; returns the status and the time to the reply.
    async fn deliver(&self) -> (u16, Duration) {
        let started = Instant::now();
        let reply = self
            .http
            .post(&self.url)
            .header("X-GitHub-Event", "issues")
            .header("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string())
            .header("X-Hub-Signature-256", &self.signature)
            .header("Content-Type", "application/json")
            .body(self.body.as_ref().clone())
            .send()
            .await;
        let status = match reply {
            Ok(r) => {
                let s = r.status().as_u16();
                let _ = r.bytes().await;
                s
            }
            Err(_) => 0,
        };
        (status, started.elapsed())
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = fresh_database(&args.database_url).await?;
    let env: HashMap<String, String> = [
        ("CODEXK8S_DATABASE_URL", db.url.as_str()),
        ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0"),
        ("CODEXK8S_GITHUB_WEBHOOK_SECRETS", SECRET),
        ("CODEXK8S_DATABASE_MAX_CONNECTIONS", "40"),
        ("CODEXK8S_LOG_FILTER", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_env(&env).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = CancellationToken::new();
    let roles: Vec<Role> = match std::env::var("CODEXK8S_BENCH_ROLES").ok().as_deref() {
        Some("gateway") => vec![Role::Gateway],
        _ => Role::ALL.to_vec(),
    };
    let service = codex_k8s::serve::start(&config, &roles, stop.clone()).await?;
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/github-webhooks/issues.labeled.payload.json");
    let body = std::fs::read(&fixture)?;
    let target = Arc::new(Target {
        url: format!("http://{}/api/v1/webhooks/github", service.http_addr),
        signature: codex_k8s::gateway::sign(SECRET, &body),
        body: Arc::new(body),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY * 2)
            .build()?,
    });
    println!(
        "webhook ingress: {} KB signed issues.labeled deliveries, one process with all roles",
        target.body.len() / 1024
    );

    // Warm-up: connections, caches, prepared statements.
    saturate(&target, Duration::from_secs(2)).await;
    sqlx::raw_sql(include_str!("vacuum_webhook_tables.sql"))
        .execute(&db.pool)
        .await?;
    let (processed_before, stored_before) = processed(&db.pool).await?;
    let (accepted, other, secs, generator) = match which_wrk() {
        Some(wrk) => {
            let (replies, secs) = saturate_with_wrk(&wrk, &target, &fixture)?;
            // wrk cannot tell 202 from 200 (duplicate), so count the rows stored instead.
            let stored = (processed(&db.pool).await?.1 - stored_before) as u64;
            (stored, replies.saturating_sub(stored), secs, "wrk")
        }
        None => {
            let (accepted, other, secs) = saturate(&target, WINDOW).await;
            (accepted, other, secs, "in-process client")
        }
    };
    let processed_in_window = processed(&db.pool).await?.0 - processed_before;
    let rate = accepted as f64 / secs;
    println!(
        "accepted webhooks/s at concurrency {CONCURRENCY} ({generator}): {rate:.0} ({accepted} accepted, {other} other replies in {secs:.1} s); control processed {:.0}/s meanwhile",
        processed_in_window as f64 / secs
    );
    // The steady phase measures its own load, not the burst's backlog.
    if roles.contains(&Role::Control) {
        let draining = Instant::now();
        loop {
            let (done, stored) = processed(&db.pool).await?;
            if done >= stored {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "backlog left by the burst processed in {:.1} s",
            draining.elapsed().as_secs_f64()
        );
    }

    let (latencies, accepted, other) = steady(&target, STEADY_RATE, WINDOW).await;
    let p = percentiles(latencies);
    println!(
        "reply latency at a steady {STEADY_RATE}/s offered for {} s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({accepted} accepted, {other} other)",
        WINDOW.as_secs(),
        ms(p.p50),
        ms(p.p99),
        ms(p.max)
    );
    stop.cancel();
    service.wait().await;

    if let Some(pgbench) = &args.pgbench {
        let ceiling_db = fresh_database(&args.database_url).await?;
        sqlx::query(include_str!("webhook_payload_table.sql"))
            .execute(&ceiling_db.pool)
            .await?;
        let payload: serde_json::Value = serde_json::from_slice(&std::fs::read(&fixture)?)?;
        sqlx::query(include_str!("webhook_payload_insert.sql"))
            .bind(payload)
            .execute(&ceiling_db.pool)
            .await?;
        let tps = pgbench_run(
            pgbench,
            "webhook_insert.pgbench.sql",
            &ceiling_db.url,
            CONCURRENCY,
            &["-T", &WINDOW.as_secs().to_string()],
        )?;
        println!(
            "pgbench ceiling, event + job row per transaction, {CONCURRENCY} clients: {tps:.0} tx/s; webhooks reach {:.0} % of it (target ≥ 60 %)",
            100.0 * rate / tps
        );
        ceiling_db.drop_now(&args.database_url).await?;
    }
    db.drop_now(&args.database_url).await?;
    Ok(())
}

/// `wrk` when it is installed: a load generator in its own process costs the service less CPU
/// than the in-process client. `CODEXK8S_BENCH_WRK=0` forces the in-process client.
fn which_wrk() -> Option<PathBuf> {
    if std::env::var("CODEXK8S_BENCH_WRK").as_deref() == Ok("0") {
        return None;
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wrk"))
            .find(|candidate| candidate.is_file())
    })
}

/// `CONCURRENCY` wrk connections posting back to back for `WINDOW`; returns (replies, seconds).
/// Refusals (non-2xx) and socket errors make it fail: the flood must be all valid deliveries.
fn saturate_with_wrk(
    wrk: &std::path::Path,
    target: &Target,
    fixture: &std::path::Path,
) -> anyhow::Result<(u64, f64)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/webhook_flood.lua");
    let output = std::process::Command::new(wrk)
        .args(["-t", "2", "-c", &CONCURRENCY.to_string()])
        .args(["-d", &format!("{}s", WINDOW.as_secs())])
        .arg("-s")
        .arg(&script)
        .arg(&target.url)
        .arg("--")
        .arg(fixture)
        .arg(&target.signature)
        .arg(uuid::Uuid::new_v4().simple().to_string())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {text}");
    // "  12345 requests in 10.00s, 1.23MB read", then "Non-2xx or 3xx responses: N" if any.
    let (requests, secs) = text
        .lines()
        .find_map(|line| {
            let (count, rest) = line.trim().split_once(" requests in ")?;
            let secs = rest.split_once("s,")?.0;
            Some((count.parse::<u64>().ok()?, secs.parse::<f64>().ok()?))
        })
        .ok_or_else(|| anyhow::anyhow!("no request count in wrk output: {text}"))?;
    let counted = |label: &str| -> u64 {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(|rest| {
                rest.split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    };
    let refused = counted("Non-2xx or 3xx responses:") + counted("Socket errors:");
    anyhow::ensure!(
        refused == 0,
        "{refused} deliveries were refused or failed: {text}"
    );
    Ok((requests, secs))
}

/// (deliveries the control role has finished with, all stored deliveries), warm-up included.
async fn processed(pool: &sqlx::PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(include_str!("count_processed_events.sql"))
        .fetch_one(pool)
        .await?)
}

/// `CONCURRENCY` clients posting back to back for `window`; returns (202s, other replies, seconds).
async fn saturate(target: &Arc<Target>, window: Duration) -> (u64, u64, f64) {
    let accepted = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + window;
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (target, accepted, other) = (target.clone(), accepted.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match target.deliver().await.0 {
                    202 => accepted.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    (
        accepted.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

/// Offers `rate` deliveries per second for `window`, each on its own task; returns the reply times.
async fn steady(target: &Arc<Target>, rate: u64, window: Duration) -> (Vec<Duration>, u64, u64) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate * window.as_secs();
    for _ in 0..total {
        ticker.tick().await;
        let (target, tx) = (target.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(target.deliver().await);
        });
    }
    drop(tx);
    let (mut latencies, mut accepted, mut other) = (Vec::new(), 0, 0);
    while let Some((status, latency)) = rx.recv().await {
        latencies.push(latency);
        if status == 202 {
            accepted += 1
        } else {
            other += 1
        }
    }
    (latencies, accepted, other)
}
