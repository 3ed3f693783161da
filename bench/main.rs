//! `codex-k8s-bench`: throughput and latency of the PostgreSQL job queue, with pgbench's raw ceiling
//! for the same claim statement measured in the same run. Prints figures; asserts nothing.
//!
//! Run it with `scripts/bench.sh`, which starts a durable PostgreSQL (fsync on) for it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use codex_k8s::queue::{self, JobKind, NewJob, Registry, Wakeups, Worker, WorkerConfig};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const NOOP: JobKind = JobKind::new("bench.noop");

mod runtime;
mod webhooks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Suite {
    /// Job queue drain, enqueue→start latency, pgbench claim ceiling.
    Queue,
    /// Webhook ingress rate and latency, pgbench insert ceiling.
    Webhooks,
    /// Webhook → Kubernetes Job latency and API requests per run, against the fake API server.
    Runtime,
}

#[derive(Debug, Parser)]
#[command(about = "Benchmarks codex-k8s: the job queue and webhook ingress")]
struct Args {
    /// Suites to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Suite::Queue, Suite::Webhooks, Suite::Runtime])]
    suite: Vec<Suite>,
    /// Server to create throwaway databases on (a superuser connection to any database).
    #[arg(
        long,
        env = "CODEXK8S_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:55433/postgres"
    )]
    database_url: String,
    /// Jobs pre-inserted for each drain run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Jobs drained once before measuring, to warm the server up (0 to skip).
    #[arg(long, default_value_t = 50_000)]
    warmup: usize,
    /// Worker counts to drain with, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16])]
    workers: Vec<usize>,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Most jobs a worker claims per round trip.
    #[arg(long, default_value_t = 64)]
    claim_batch: usize,
    /// Samples of enqueue→start latency.
    #[arg(long, default_value_t = 1000)]
    latency_samples: usize,
    /// pgbench binary for the raw ceiling; skipped when absent.
    #[arg(long, env = "CODEXK8S_PGBENCH")]
    pgbench: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    if args.suite.contains(&Suite::Queue) {
        queue_suite(&args).await?;
    }
    if args.suite.contains(&Suite::Webhooks) {
        webhooks::run(&args).await?;
    }
    if args.suite.contains(&Suite::Runtime) {
        runtime::run(&args).await?;
    }
    Ok(())
}

async fn queue_suite(args: &Args) -> anyhow::Result<()> {
    println!(
        "codex-k8s queue benchmark: {} jobs per drain, concurrency {} and claim batch {} per worker",
        args.jobs, args.concurrency, args.claim_batch
    );
    println!("{:<34} {:>12} {:>12}", "run", "jobs/s", "seconds");
    if args.warmup > 0 {
        // A fresh server first creates WAL segments and fills caches; keep that out of the figures.
        let db = fresh_database(&args.database_url).await?;
        prefill(&db.pool, args.warmup).await?;
        let warm = Args {
            jobs: args.warmup,
            ..Args::parse_from(["bench"])
        };
        drain(&db.pool, 4, &warm).await?;
        db.drop_now(&args.database_url).await?;
    }
    let mut drained = Vec::new();
    for &workers in &args.workers {
        let db = fresh_database(&args.database_url).await?;
        prefill(&db.pool, args.jobs).await?;
        let (rate, secs) = drain(&db.pool, workers, args).await?;
        println!(
            "{:<34} {:>12.0} {:>12.2}",
            format!("queue drain, {workers} worker(s)"),
            rate,
            secs
        );
        drained.push((workers, rate));
        db.drop_now(&args.database_url).await?;
    }
    if let Some(pgbench) = &args.pgbench {
        for &(clients, queue_rate) in &drained {
            for (script, rows_per_tx) in [("claim.pgbench.sql", 1), ("claim_batch.pgbench.sql", 64)]
            {
                let db = fresh_database(&args.database_url).await?;
                prefill(&db.pool, args.jobs).await?;
                let per_client = (args.jobs / rows_per_tx / clients).to_string();
                let rows_per_s =
                    pgbench_run(pgbench, script, &db.url, clients, &["-t", &per_client])?
                        * rows_per_tx as f64;
                println!(
                    "{:<34} {:>12.0} {:>12}   queue/pgbench = {:.2}",
                    format!("pgbench claim {rows_per_tx}/tx, {clients} client(s)"),
                    rows_per_s,
                    "",
                    queue_rate / rows_per_s
                );
                db.drop_now(&args.database_url).await?;
            }
        }
    }
    let db = fresh_database(&args.database_url).await?;
    let (from_call, from_commit) = latency(&db.pool, args.latency_samples).await?;
    for (label, l) in [
        ("from the enqueue call", from_call),
        ("from the enqueue's commit", from_commit),
    ] {
        println!(
            "enqueue→start latency {label}, idle queue, NOTIFY path, {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            args.latency_samples,
            ms(l.p50),
            ms(l.p99),
            ms(l.max)
        );
    }
    db.drop_now(&args.database_url).await?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct BenchDb {
    name: String,
    url: String,
    pool: PgPool,
}

impl BenchDb {
    async fn drop_now(self, admin_url: &str) -> anyhow::Result<()> {
        self.pool.close().await;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&admin)
        .await?;
        Ok(())
    }
}

async fn fresh_database(admin_url: &str) -> anyhow::Result<BenchDb> {
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(admin_url)
        .await?;
    // The name is generated from hex digits above; CREATE DATABASE takes no bind parameters.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&format!("/{name}"));
    let pool = PgPoolOptions::new()
        .max_connections(48)
        .connect(url.as_str())
        .await?;
    codex_k8s::store::migrations::run(&pool).await?;
    Ok(BenchDb {
        name,
        url: url.to_string(),
        pool,
    })
}

async fn prefill(pool: &PgPool, jobs: usize) -> anyhow::Result<()> {
    let mut left = jobs;
    while left > 0 {
        let n = left.min(10_000);
        queue::enqueue_many(
            pool,
            &NOOP,
            (0..n).map(|_| NewJob::new(json!({}))).collect(),
        )
        .await?;
        left -= n;
    }
    sqlx::raw_sql(include_str!("vacuum_jobs.sql"))
        .execute(pool)
        .await?;
    Ok(())
}

fn worker_config(owner: String, args: &Args) -> WorkerConfig {
    WorkerConfig {
        owner,
        concurrency: args.concurrency,
        claim_batch: args.claim_batch,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(500),
        rescue_interval: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(10),
    }
}

/// Drains the pre-filled queue with `workers` workers; returns jobs/s and seconds, measured until
/// the database shows every job succeeded.
async fn drain(pool: &PgPool, workers: usize, args: &Args) -> anyhow::Result<(f64, f64)> {
    let ran = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let wakeups = Wakeups::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..workers {
        let mut registry = Registry::new();
        let ran = ran.clone();
        registry.register(NOOP, move |_| {
            ran.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        });
        let worker = Worker::new(
            pool.clone(),
            registry,
            worker_config(format!("bench-{i}"), args),
            Default::default(),
            &wakeups,
        );
        tasks.push(tokio::spawn(worker.run(stop.clone())));
    }
    while ran.load(Ordering::Relaxed) < args.jobs {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    loop {
        let succeeded: i64 = sqlx::query_scalar(include_str!("count_succeeded.sql"))
            .fetch_one(pool)
            .await?;
        if succeeded as usize >= args.jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.cancel();
    for t in tasks {
        t.await?;
    }
    Ok((args.jobs as f64 / secs, secs))
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: *samples.last().expect("samples"),
    }
}

/// One idle worker woken by NOTIFY; each sample enqueues one job and waits for its handler to start.
/// Returns latencies measured from the enqueue call and from its commit being acknowledged.
async fn latency(pool: &PgPool, samples: usize) -> anyhow::Result<(Percentiles, Percentiles)> {
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<Instant>();
    let mut registry = Registry::new();
    registry.register(NOOP, move |_| {
        let _ = started_tx.send(Instant::now());
        async { Ok(()) }
    });
    let stop = CancellationToken::new();
    let wakeups = Wakeups::new();
    let listener = tokio::spawn(queue::listen_for_wakeups(
        pool.clone(),
        wakeups.clone(),
        stop.clone(),
    ));
    let mut config = worker_config("latency".into(), &Args::parse_from(["bench"]));
    config.poll_interval = Duration::from_secs(60); // only NOTIFY can wake it in time
    let worker = tokio::spawn(
        Worker::new(pool.clone(), registry, config, Default::default(), &wakeups).run(stop.clone()),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut from_call, mut from_commit) =
        (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples {
        let called = Instant::now();
        queue::enqueue(pool, &NOOP, NewJob::new(json!({}))).await?;
        let committed = Instant::now();
        let started = tokio::time::timeout(Duration::from_secs(10), started_rx.recv())
            .await?
            .expect("worker alive");
        from_call.push(started - called);
        from_commit.push(started.saturating_duration_since(committed));
        // Let the worker finish and go idle again, so every sample takes the wake-up path.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    stop.cancel();
    worker.await?;
    listener.await?;
    Ok((percentiles(from_call), percentiles(from_commit)))
}

/// pgbench running `script` (from `bench/`) with `clients` clients until `limit` (`-t N` or `-T secs`);
/// returns transactions/s.
fn pgbench_run(
    pgbench: &PathBuf,
    script: &str,
    url: &str,
    clients: usize,
    limit: &[&str],
) -> anyhow::Result<f64> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join(script);
    let output = std::process::Command::new(pgbench)
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args(limit)
        .arg(url)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let tps = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output: {stdout}"))?;
    Ok(tps)
}
