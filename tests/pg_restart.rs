//! PostgreSQL restarted under load: workers reconnect on their own and every job completes.
//! Runs its own PostgreSQL instance (via `scripts/dev-postgres.sh`) so restarting it does not
//! disturb the other tests.

mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codex_k8s::queue::{self, JobKind, NewJob, Registry, Wakeups, Worker};
use codex_k8s::store::{self, PoolSettings};
use serde_json::json;
use support::{TestDb, count_in_state, eventually, worker_config};
use tokio_util::sync::CancellationToken;

const WORK: JobKind = JobKind::new("test.work");
const JOBS: usize = 3000;

/// A PostgreSQL server of this test's own, stopped when dropped.
struct PrivateServer {
    port: u16,
}

impl PrivateServer {
    fn script(&self, action: &str) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-postgres.sh");
        let status = Command::new(script)
            .arg(action)
            .env("CODEXK8S_DEV_PG_PORT", self.port.to_string())
            .status()
            .expect("run scripts/dev-postgres.sh");
        assert!(status.success(), "scripts/dev-postgres.sh {action} failed");
    }

    fn start() -> Self {
        // A port the system says is free right now: a fixed range can collide with the local side
        // of some connection, and PostgreSQL then cannot listen.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let server = Self { port };
        server.script("start");
        server
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.script("destroy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_survive_a_postgres_restart_and_complete_every_job() {
    let server = PrivateServer::start();
    let db = TestDb::migrated_on(&server.admin_url()).await;
    let ids = queue::enqueue_many(
        &db.pool,
        &WORK,
        (0..JOBS).map(|i| NewJob::new(json!({ "n": i }))).collect(),
    )
    .await
    .unwrap();

    // The workers use the service's own pool settings, not the test's pool.
    let pool = store::connect_lazy(&PoolSettings {
        url: db.url.clone(),
        max_connections: 10,
        acquire_timeout: Duration::from_secs(2),
        application_name: "restart-test".into(),
    })
    .unwrap();
    let seen: Arc<Mutex<HashSet<i64>>> = Default::default();
    let wakeups = Wakeups::new();
    let stop = CancellationToken::new();
    tokio::spawn(queue::listen_for_wakeups(
        pool.clone(),
        wakeups.clone(),
        stop.clone(),
    ));
    let mut workers = Vec::new();
    for i in 0..2 {
        let mut registry = Registry::new();
        let s = seen.clone();
        registry.register(WORK, move |ctx| {
            let s = s.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                s.lock().unwrap().insert(ctx.id);
                Ok(())
            }
        });
        let worker = Worker::new(
            pool.clone(),
            registry,
            worker_config(&format!("restart-{i}")),
            Default::default(),
            &wakeups,
        );
        workers.push(tokio::spawn(worker.run(stop.clone())));
    }

    eventually(
        Duration::from_secs(60),
        "a first share of the jobs to finish",
        || async { (seen.lock().unwrap().len() >= JOBS / 5).then_some(()) },
    )
    .await;
    let before_restart = seen.lock().unwrap().len();
    assert!(before_restart < JOBS, "the restart must happen under load");
    server.script("restart");

    eventually(
        Duration::from_secs(120),
        "every job to succeed after the restart",
        || async {
            // The test's own pool reconnects too; a failed count just means "not yet".
            let succeeded =
                sqlx::query_scalar::<_, i64>(include_str!("support/sql/count_jobs_in_state.sql"))
                    .bind("succeeded")
                    .fetch_one(&db.pool)
                    .await
                    .ok()?;
            (succeeded == JOBS as i64).then_some(())
        },
    )
    .await;
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    let every_job_ran = {
        let seen = seen.lock().unwrap();
        ids.iter().all(|id| seen.contains(id))
    };
    assert!(every_job_ran, "every job ran");
    assert_eq!(count_in_state(&db.pool, "dead").await, 0);
    assert_eq!(count_in_state(&db.pool, "running").await, 0);
}
