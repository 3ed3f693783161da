//! Tests that need several operating-system processes: a worker killed with SIGKILL, and leader
//! hand-over between processes. The test binary re-executes itself as the child process (selected
//! by `CODEXK8S_TEST_CHILD`), so the children run the real queue and election code.

mod support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codex_k8s::leader::{self, ElectionConfig};
use codex_k8s::queue::{self, JobKind, JobState, NewJob, Registry, Wakeups, Worker};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use support::{TestDb, eventually, job_in_state, worker_config};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const HOLD: JobKind = JobKind::new("test.hold").max_attempts(5);
const CHILD_LEASE: Duration = Duration::from_secs(2);
const LEADER_TTL: Duration = Duration::from_millis(1500);
const TICKS_LEASE: &str = "test-singleton";

fn main() {
    if let Ok(role) = std::env::var("CODEXK8S_TEST_CHILD") {
        let url = std::env::var("CODEXK8S_TEST_CHILD_DB").expect("child needs a database URL");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        match role.as_str() {
            "worker" => runtime.block_on(child_worker(url)),
            "leader" => runtime.block_on(child_leader(
                url,
                std::env::var("CODEXK8S_TEST_CHILD_NAME").expect("name"),
            )),
            other => panic!("unknown child role {other}"),
        }
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("sigkilled_worker_jobs_run_again_after_lease_expiry", || {
            run(sigkilled_worker_jobs_run_again_after_lease_expiry())
        }),
        Trial::test(
            "leader_hands_over_between_processes_and_never_overlaps",
            || run(leader_hands_over_between_processes_and_never_overlaps()),
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn run(test: impl std::future::Future<Output = ()>) -> Result<(), Failed> {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(test);
    Ok(())
}

// ---- children ----

/// Claims `test.hold` jobs, prints `STARTED <id> <attempt>` for each and holds them forever.
async fn child_worker(url: String) {
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .connect(&url)
        .await
        .expect("child connects");
    let mut registry = Registry::new();
    registry.register(HOLD, |ctx| async move {
        println!("STARTED {} {}", ctx.id, ctx.attempt);
        std::future::pending::<()>().await;
        Ok(())
    });
    let mut config = worker_config("doomed-child");
    config.lease = CHILD_LEASE;
    let worker = Worker::new(pool, registry, config, Default::default(), &Wakeups::new());
    worker.run(CancellationToken::new()).await;
}

/// Campaigns for the test lease; while leading, records each guarded round in `singleton_ticks`.
/// Stops gracefully (releasing the lease) on SIGTERM.
async fn child_leader(url: String, name: String) {
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .connect(&url)
        .await
        .expect("child connects");
    let shutdown = CancellationToken::new();
    let on_term = shutdown.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        on_term.cancel();
    });
    let (leadership, election) = leader::spawn_election(
        pool.clone(),
        ElectionConfig {
            name: TICKS_LEASE.into(),
            holder: name.clone(),
            ttl: LEADER_TTL,
        },
        |_| {},
        shutdown.clone(),
    );
    leader::run_singleton(leadership, Duration::from_millis(50), shutdown, |guard| {
        let (pool, name) = (pool.clone(), name.clone());
        async move {
            let mut tx = pool
                .begin()
                .await
                .map_err(codex_k8s::store::map_sqlx_error)?;
            guard.confirm(&mut tx).await?;
            let started: chrono::DateTime<chrono::Utc> =
                sqlx::query_scalar(include_str!("support/sql/clock.sql"))
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            sqlx::query(include_str!("support/sql/insert_singleton_tick.sql"))
                .bind(&name)
                .bind(guard.term())
                .bind(started)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit()
                .await
                .map_err(codex_k8s::store::map_sqlx_error)?;
            Ok(())
        }
    })
    .await;
    let _ = election.await;
}

fn spawn_child(role: &str, db: &TestDb, name: &str) -> Child {
    Command::new(std::env::current_exe().expect("own executable"))
        .env("CODEXK8S_TEST_CHILD", role)
        .env("CODEXK8S_TEST_CHILD_DB", &db.url)
        .env("CODEXK8S_TEST_CHILD_NAME", name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child process")
}

async fn sigkill(child: &mut Child) {
    child.start_kill().expect("SIGKILL the child");
    child.wait().await.expect("reap the child");
}

// ---- tests ----

async fn sigkilled_worker_jobs_run_again_after_lease_expiry() {
    let db = TestDb::migrated().await;
    let ids = queue::enqueue_many(
        &db.pool,
        &HOLD,
        (0..3).map(|i| NewJob::new(json!({ "n": i }))).collect(),
    )
    .await
    .unwrap();

    let mut child = spawn_child("worker", &db, "doomed");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut started = Vec::new();
    while started.len() < ids.len() {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("child reports its jobs in time")
            .unwrap()
            .expect("child is still running");
        if let Some(rest) = line.strip_prefix("STARTED ") {
            started.push(rest.to_owned());
        }
    }
    sigkill(&mut child).await;
    let killed_at = Instant::now();
    for id in &ids {
        let job = queue::get(&db.pool, *id).await.unwrap();
        assert_eq!(
            (job.state, job.attempt),
            (JobState::Running, 1),
            "job {id} still leased by the dead worker"
        );
    }

    // A successor that holds its jobs until told to finish, so the late completion can be tried
    // while the new attempt runs.
    let seen: Arc<Mutex<Vec<(i64, i32, Duration)>>> = Default::default();
    let release = Arc::new(tokio::sync::Notify::new());
    let mut registry = Registry::new();
    let (s, r) = (seen.clone(), release.clone());
    registry.register(HOLD, move |ctx| {
        let (s, r) = (s.clone(), r.clone());
        async move {
            s.lock()
                .unwrap()
                .push((ctx.id, ctx.attempt, killed_at.elapsed()));
            r.notified().await;
            Ok(())
        }
    });
    let stop = CancellationToken::new();
    let successor = tokio::spawn(
        Worker::new(
            db.pool.clone(),
            registry,
            worker_config("successor"),
            Default::default(),
            &Wakeups::new(),
        )
        .run(stop.clone()),
    );
    eventually(
        Duration::from_secs(20),
        "the successor to rerun all jobs",
        || async { (seen.lock().unwrap().len() == ids.len()).then_some(()) },
    )
    .await;
    for (id, attempt, after) in seen.lock().unwrap().iter() {
        assert_eq!(*attempt, 2, "job {id}: attempt increased by exactly one");
        assert!(
            *after >= CHILD_LEASE.mul_f64(0.8),
            "job {id} rerun {after:?} after the kill, before the lease expired"
        );
    }
    for id in &ids {
        assert!(
            !queue::complete_fenced(&db.pool, *id, 1).await.unwrap(),
            "late completion of attempt 1 is rejected"
        );
        let job = queue::get(&db.pool, *id).await.unwrap();
        assert_eq!(
            (job.state, job.attempt),
            (JobState::Running, 2),
            "the late completion changed nothing"
        );
        assert!(job.last_error.unwrap().contains("lease expired"));
    }
    release.notify_waiters();
    for id in &ids {
        let id = *id;
        job_in_state(&db.pool, id, JobState::Succeeded, Duration::from_secs(10)).await;
        assert!(!queue::complete_fenced(&db.pool, id, 1).await.unwrap());
        assert_eq!(queue::get(&db.pool, id).await.unwrap().attempt, 2);
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        ids.len(),
        "each job ran once more, not twice"
    );
    stop.cancel();
    successor.await.unwrap();
}

#[derive(sqlx::FromRow, Debug)]
struct HolderTicks {
    holder: String,
    min_term: i64,
    max_term: i64,
    ticks: i64,
    first_at: chrono::DateTime<chrono::Utc>,
    last_at: chrono::DateTime<chrono::Utc>,
}

async fn ticks_by_holder(db: &TestDb) -> Vec<HolderTicks> {
    sqlx::query_as(include_str!("support/sql/singleton_ticks_by_holder.sql"))
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

async fn leader_hands_over_between_processes_and_never_overlaps() {
    let db = TestDb::migrated().await;
    sqlx::query(include_str!("support/sql/create_singleton_ticks.sql"))
        .execute(&db.pool)
        .await
        .unwrap();

    let mut a = spawn_child("leader", &db, "a");
    eventually(Duration::from_secs(20), "a to lead", || async {
        ticks_by_holder(&db)
            .await
            .iter()
            .any(|h| h.holder == "a")
            .then_some(())
    })
    .await;
    let mut b = spawn_child("leader", &db, "b");
    tokio::time::sleep(LEADER_TTL * 2).await;
    let holders = ticks_by_holder(&db).await;
    assert!(
        holders.iter().all(|h| h.holder == "a"),
        "only the leader works while it lives: {holders:?}"
    );

    // Leader dies without a word: b takes over once the lease expires.
    sigkill(&mut a).await;
    let killed = Instant::now();
    eventually(Duration::from_secs(10), "b to take over", || async {
        ticks_by_holder(&db)
            .await
            .iter()
            .any(|h| h.holder == "b")
            .then_some(())
    })
    .await;
    let handover = killed.elapsed();
    assert!(handover < LEADER_TTL * 3, "hand-over took {handover:?}");

    // A graceful stop releases the lease: c takes over well before the TTL would run out.
    let mut c = spawn_child("leader", &db, "c");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = b.id().expect("b runs") as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let terminated = Instant::now();
    b.wait().await.unwrap();
    eventually(Duration::from_secs(10), "c to take over", || async {
        ticks_by_holder(&db)
            .await
            .iter()
            .any(|h| h.holder == "c")
            .then_some(())
    })
    .await;
    let graceful_handover = terminated.elapsed();
    sigkill(&mut c).await;

    let holders = ticks_by_holder(&db).await;
    let names: Vec<&str> = holders.iter().map(|h| h.holder.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "{holders:?}");
    for pair in holders.windows(2) {
        assert!(
            pair[0].max_term < pair[1].min_term,
            "terms grow with each new leader: {holders:?}"
        );
        assert!(
            pair[0].last_at <= pair[1].first_at,
            "one leader at a time: {holders:?}"
        );
    }
    assert!(
        holders
            .iter()
            .all(|h| h.ticks > 0 && h.min_term == h.max_term)
    );
    let overlaps: i64 = sqlx::query_scalar(include_str!("support/sql/singleton_overlaps.sql"))
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(overlaps, 0, "the singleton never ran twice at once");
    assert!(
        graceful_handover < LEADER_TTL,
        "a released lease is taken over before it would have expired: {graceful_handover:?}"
    );
}
