//! Shared test helpers: a fresh, migrated PostgreSQL database per test, and waiting on conditions
//! with a deadline instead of sleeping.
#![allow(dead_code)] // each test crate uses a different subset

pub mod app;
pub mod fake_github;
pub mod fake_k8s;
pub mod proxy;
pub mod seed;

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The server the tests use; started by `scripts/test.sh` (or `scripts/dev-postgres.sh start`).
pub fn admin_url() -> String {
    std::env::var("CODEXK8S_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

/// Replaces the database name of `url`.
pub fn with_database(url: &str, database: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("test database URL parses");
    parsed.set_path(&format!("/{database}"));
    parsed.to_string()
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    /// A new empty database with no migrations applied.
    pub async fn empty() -> Self {
        Self::create(&admin_url()).await
    }

    /// A new database with every migration applied.
    pub async fn migrated() -> Self {
        Self::migrated_on(&admin_url()).await
    }

    pub async fn migrated_on(admin_url: &str) -> Self {
        let db = Self::create(admin_url).await;
        codex_k8s::store::migrations::run(&db.pool)
            .await
            .expect("migrations apply");
        db
    }

    async fn create(admin_url: &str) -> Self {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new().max_connections(1).connect(admin_url).await.unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL at {admin_url}: {e}. Start it with scripts/dev-postgres.sh start")
        });
        // CREATE DATABASE takes no bind parameters; the name is generated above from hex digits only.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = with_database(admin_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(40)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .expect("connect to test database");
        Self { name, url, pool }
    }
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A worker configuration with short timings, suited to tests.
pub fn worker_config(owner: &str) -> codex_k8s::queue::WorkerConfig {
    codex_k8s::queue::WorkerConfig {
        owner: owner.to_owned(),
        concurrency: 8,
        claim_batch: 8,
        lease: Duration::from_secs(5),
        poll_interval: Duration::from_millis(500),
        rescue_interval: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Counts jobs in `state`.
pub async fn count_in_state(pool: &PgPool, state: &str) -> i64 {
    sqlx::query_scalar(include_str!("sql/count_jobs_in_state.sql"))
        .bind(state)
        .fetch_one(pool)
        .await
        .expect("count jobs")
}

/// Waits until job `id` reaches `state` and returns it.
pub async fn job_in_state(
    pool: &PgPool,
    id: i64,
    state: codex_k8s::queue::JobState,
    timeout: Duration,
) -> codex_k8s::queue::JobRecord {
    eventually(
        timeout,
        &format!("job {id} to be {}", state.as_str()),
        || async {
            let job = codex_k8s::queue::get(pool, id).await.expect("job exists");
            (job.state == state).then_some(job)
        },
    )
    .await
}
