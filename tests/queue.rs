//! The job queue against a real PostgreSQL: draining, retries, dedupe, fencing, shutdown.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codex_k8s::queue::{self, JobKind, JobState, NewJob, Registry, Wakeups, Worker, WorkerConfig};
use serde_json::json;
use sqlx::PgPool;
use support::{TestDb, count_in_state, eventually, job_in_state, worker_config};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NOOP: JobKind = JobKind::new("test.noop");

/// A running worker and the token that stops it.
struct RunningWorker {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningWorker {
    fn start(pool: &PgPool, registry: Registry, config: WorkerConfig, wakeups: &Wakeups) -> Self {
        let stop = CancellationToken::new();
        let worker = Worker::new(pool.clone(), registry, config, Default::default(), wakeups);
        let task = tokio::spawn(worker.run(stop.clone()));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("worker stops in time")
            .expect("worker task");
    }
}

fn listen(pool: &PgPool) -> (Wakeups, CancellationToken) {
    let wakeups = Wakeups::new();
    let stop = CancellationToken::new();
    tokio::spawn(queue::listen_for_wakeups(
        pool.clone(),
        wakeups.clone(),
        stop.clone(),
    ));
    (wakeups, stop)
}

type Seen = Arc<Mutex<HashMap<i64, Vec<i32>>>>;

/// A registry whose `kind` handler records (id, attempt) and then runs `outcome`.
fn recording<F>(kind: JobKind, seen: Seen, outcome: F) -> Registry
where
    F: Fn(&queue::JobContext) -> Result<(), queue::JobError> + Send + Sync + 'static,
{
    let outcome = Arc::new(outcome);
    let mut registry = Registry::new();
    registry.register(kind, move |ctx| {
        let (seen, outcome) = (seen.clone(), outcome.clone());
        async move {
            seen.lock()
                .unwrap()
                .entry(ctx.id)
                .or_default()
                .push(ctx.attempt);
            outcome(&ctx)
        }
    });
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_workers_run_each_of_5000_jobs_exactly_once() {
    let db = TestDb::migrated().await;
    let jobs: Vec<NewJob> = (0..5000).map(|i| NewJob::new(json!({ "n": i }))).collect();
    let ids = queue::enqueue_many(&db.pool, &NOOP, jobs).await.unwrap();
    assert_eq!(ids.len(), 5000);

    let seen: Seen = Default::default();
    let per_worker: Arc<Mutex<HashMap<usize, usize>>> = Default::default();
    let (wakeups, listener) = listen(&db.pool);
    let workers: Vec<RunningWorker> = (0..8)
        .map(|i| {
            let per_worker = per_worker.clone();
            let registry = recording(NOOP, seen.clone(), move |_| {
                *per_worker.lock().unwrap().entry(i).or_default() += 1;
                Ok(())
            });
            RunningWorker::start(
                &db.pool,
                registry,
                worker_config(&format!("drain-{i}")),
                &wakeups,
            )
        })
        .collect();
    eventually(
        Duration::from_secs(60),
        "all 5000 jobs to succeed",
        || async { (count_in_state(&db.pool, "succeeded").await == 5000).then_some(()) },
    )
    .await;
    for w in workers {
        w.stop().await;
    }
    listener.cancel();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5000, "every job ran");
    let repeated: Vec<_> = seen
        .iter()
        .filter(|(_, attempts)| attempts.len() != 1)
        .collect();
    assert!(
        repeated.is_empty(),
        "jobs that ran more than once: {repeated:?}"
    );
    for id in ids {
        assert_eq!(seen[&id], vec![1]);
    }
    let per_worker = per_worker.lock().unwrap();
    assert!(
        per_worker.len() > 1,
        "work was spread over several workers: {per_worker:?}"
    );
    assert_eq!(per_worker.values().sum::<usize>(), 5000);
}

#[tokio::test]
async fn failing_job_backs_off_exponentially_then_dies_with_its_last_error() {
    let db = TestDb::migrated().await;
    const FLAKY: JobKind = JobKind::new("test.flaky")
        .max_attempts(4)
        .backoff(Duration::from_millis(200), Duration::from_millis(500));
    let id = queue::enqueue(&db.pool, &FLAKY, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let times: Arc<Mutex<Vec<Instant>>> = Default::default();
    let mut registry = Registry::new();
    let t = times.clone();
    registry.register(FLAKY, move |ctx| {
        let t = t.clone();
        async move {
            t.lock().unwrap().push(Instant::now());
            Err(queue::JobError::retryable(format!(
                "boom on attempt {}",
                ctx.attempt
            )))
        }
    });
    let (wakeups, listener) = listen(&db.pool);
    let mut config = worker_config("flaky");
    config.poll_interval = Duration::from_secs(30); // retries must not depend on polling
    let worker = RunningWorker::start(&db.pool, registry, config, &wakeups);
    let job = job_in_state(&db.pool, id, JobState::Dead, Duration::from_secs(20)).await;
    worker.stop().await;
    listener.cancel();

    assert_eq!(job.attempt, 4);
    assert_eq!(job.last_error.as_deref(), Some("boom on attempt 4"));
    assert!(job.finished_at.is_some());
    let times = times.lock().unwrap();
    assert_eq!(times.len(), 4, "ran exactly max_attempts times");
    // Ceilings after failures 1, 2, 3: 200 ms, 400 ms, 500 ms (capped); each delay lies in [c/2, c].
    for (i, ceiling_ms) in [200u64, 400, 500].into_iter().enumerate() {
        let gap = times[i + 1] - times[i];
        let floor = Duration::from_millis(ceiling_ms / 2);
        let ceiling = Duration::from_millis(ceiling_ms + 700); // + claim and scheduling slack on a busy machine
        assert!(
            gap >= floor && gap <= ceiling,
            "retry {} came after {gap:?}, expected {floor:?}..{ceiling:?}",
            i + 1
        );
    }
}

#[tokio::test]
async fn permanent_error_and_panic_are_recorded_on_the_job() {
    let db = TestDb::migrated().await;
    const STRICT: JobKind = JobKind::new("test.strict");
    const PANICKY: JobKind = JobKind::new("test.panicky")
        .max_attempts(2)
        .backoff(Duration::from_millis(10), Duration::from_millis(10));
    let strict = queue::enqueue(&db.pool, &STRICT, NewJob::new(json!({"bad": true})))
        .await
        .unwrap()
        .unwrap();
    let panicky = queue::enqueue(&db.pool, &PANICKY, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let mut registry = Registry::new();
    registry.register(STRICT, |ctx| async move {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Payload {
            issue: u64,
        }
        let payload: Payload = ctx.parse_payload()?;
        panic!("unreachable with this payload: {payload:?}");
    });
    registry.register(PANICKY, |_| async move { panic!("handler bug") });
    let (wakeups, listener) = listen(&db.pool);
    let worker = RunningWorker::start(&db.pool, registry, worker_config("errors"), &wakeups);
    for id in [strict, panicky] {
        job_in_state(&db.pool, id, JobState::Dead, Duration::from_secs(10)).await;
    }
    worker.stop().await;
    listener.cancel();
    let strict = queue::get(&db.pool, strict).await.unwrap();
    assert_eq!(strict.attempt, 1, "a permanent error is not retried");
    assert!(
        strict
            .last_error
            .unwrap()
            .contains("malformed test.strict payload")
    );
    let panicky = queue::get(&db.pool, panicky).await.unwrap();
    assert_eq!(panicky.attempt, 2);
    assert_eq!(
        panicky.last_error.as_deref(),
        Some("handler panicked: handler bug")
    );
}

#[tokio::test]
async fn handler_exceeding_its_timeout_fails_the_attempt() {
    let db = TestDb::migrated().await;
    const SLOW: JobKind = JobKind::new("test.slow")
        .max_attempts(1)
        .timeout(Duration::from_millis(200));
    let id = queue::enqueue(&db.pool, &SLOW, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let mut registry = Registry::new();
    registry.register(SLOW, |_| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    });
    let (wakeups, listener) = listen(&db.pool);
    let worker = RunningWorker::start(&db.pool, registry, worker_config("slow"), &wakeups);
    let job = job_in_state(&db.pool, id, JobState::Dead, Duration::from_secs(10)).await;
    worker.stop().await;
    listener.cancel();
    assert_eq!(job.last_error.as_deref(), Some("timed out after 200ms"));
}

#[tokio::test]
async fn unique_key_dedupes_only_unfinished_jobs() {
    let db = TestDb::migrated().await;
    let first = queue::enqueue(
        &db.pool,
        &NOOP,
        NewJob::new(json!({})).unique_key("issue-42"),
    )
    .await
    .unwrap();
    let second = queue::enqueue(
        &db.pool,
        &NOOP,
        NewJob::new(json!({})).unique_key("issue-42"),
    )
    .await
    .unwrap();
    assert!(first.is_some());
    assert_eq!(second, None, "an unfinished job with the key exists");
    const OTHER: JobKind = JobKind::new("test.other");
    let other_kind = queue::enqueue(
        &db.pool,
        &OTHER,
        NewJob::new(json!({})).unique_key("issue-42"),
    )
    .await
    .unwrap();
    assert!(other_kind.is_some(), "keys are scoped by kind");
    let bulk = queue::enqueue_many(
        &db.pool,
        &NOOP,
        vec![
            NewJob::new(json!({})).unique_key("issue-42"),
            NewJob::new(json!({})).unique_key("issue-43"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(bulk.len(), 1, "bulk enqueue skips the duplicate");

    let (wakeups, listener) = listen(&db.pool);
    let worker = RunningWorker::start(
        &db.pool,
        recording(NOOP, Default::default(), |_| Ok(())),
        worker_config("dedupe"),
        &wakeups,
    );
    let first = first.unwrap();
    job_in_state(
        &db.pool,
        first,
        JobState::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    worker.stop().await;
    listener.cancel();
    let again = queue::enqueue(
        &db.pool,
        &NOOP,
        NewJob::new(json!({})).unique_key("issue-42"),
    )
    .await
    .unwrap();
    assert!(again.is_some(), "once finished, the key is free again");
}

#[tokio::test]
async fn job_enqueued_in_a_rolled_back_transaction_does_not_exist() {
    let db = TestDb::migrated().await;
    let mut tx = db.pool.begin().await.unwrap();
    let id = queue::enqueue(&mut *tx, &NOOP, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(matches!(
        queue::get(&db.pool, id).await,
        Err(codex_k8s::domain::errors::RepositoryError::NotFound(_))
    ));

    let mut tx = db.pool.begin().await.unwrap();
    let id = queue::enqueue(&mut *tx, &NOOP, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        queue::get(&db.pool, id).await.unwrap().state,
        JobState::Available
    );
}

#[tokio::test]
async fn notify_wakes_an_idle_worker_long_before_its_poll() {
    let db = TestDb::migrated().await;
    let (wakeups, listener) = listen(&db.pool);
    let mut config = worker_config("notified");
    config.poll_interval = Duration::from_secs(60);
    let seen: Seen = Default::default();
    let worker = RunningWorker::start(
        &db.pool,
        recording(NOOP, seen.clone(), |_| Ok(())),
        config,
        &wakeups,
    );
    // Let the worker go idle first (one empty claim, then asleep for the 60 s poll).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let enqueued = Instant::now();
    let id = queue::enqueue(&db.pool, &NOOP, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    eventually(Duration::from_secs(5), "the job to run", || async {
        seen.lock().unwrap().contains_key(&id).then_some(())
    })
    .await;
    let latency = enqueued.elapsed();
    worker.stop().await;
    listener.cancel();
    assert!(
        latency < Duration::from_secs(5),
        "woken by NOTIFY, not by the 60 s poll: {latency:?}"
    );
}

#[tokio::test]
async fn delayed_job_waits_for_its_time_and_higher_priority_runs_first() {
    let db = TestDb::migrated().await;
    let delayed = queue::enqueue(
        &db.pool,
        &NOOP,
        NewJob::new(json!({})).delay(Duration::from_millis(800)),
    )
    .await
    .unwrap()
    .unwrap();
    let low = queue::enqueue(&db.pool, &NOOP, NewJob::new(json!({})).priority(-1))
        .await
        .unwrap()
        .unwrap();
    let high = queue::enqueue(&db.pool, &NOOP, NewJob::new(json!({})).priority(5))
        .await
        .unwrap()
        .unwrap();
    let order: Arc<Mutex<Vec<i64>>> = Default::default();
    let mut registry = Registry::new();
    let o = order.clone();
    registry.register(NOOP, move |ctx| {
        let o = o.clone();
        async move {
            o.lock().unwrap().push(ctx.id);
            Ok(())
        }
    });
    let mut config = worker_config("ordered");
    config.concurrency = 1;
    config.claim_batch = 1;
    let (wakeups, listener) = listen(&db.pool);
    let started = Instant::now();
    let worker = RunningWorker::start(&db.pool, registry, config, &wakeups);
    eventually(Duration::from_secs(10), "all three jobs to run", || async {
        (order.lock().unwrap().len() == 3).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    worker.stop().await;
    listener.cancel();
    assert_eq!(*order.lock().unwrap(), vec![high, low, delayed]);
    assert!(
        elapsed >= Duration::from_millis(700),
        "the delayed job ran after {elapsed:?}"
    );
}

#[tokio::test]
async fn heartbeat_keeps_a_job_longer_than_its_lease() {
    let db = TestDb::migrated().await;
    const LONG: JobKind = JobKind::new("test.long");
    let id = queue::enqueue(&db.pool, &LONG, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let seen: Seen = Default::default();
    let mut registry = Registry::new();
    let s = seen.clone();
    registry.register(LONG, move |ctx| {
        let s = s.clone();
        async move {
            s.lock()
                .unwrap()
                .entry(ctx.id)
                .or_default()
                .push(ctx.attempt);
            tokio::time::sleep(Duration::from_millis(3500)).await;
            assert!(!ctx.cancellation().is_cancelled(), "the lease was kept");
            Ok(())
        }
    });
    let mut config = worker_config("long");
    config.lease = Duration::from_secs(1);
    let (wakeups, listener) = listen(&db.pool);
    let worker = RunningWorker::start(&db.pool, registry, config.clone(), &wakeups);
    // A second worker rescues aggressively: it would steal the job if the lease lapsed.
    let mut rescuer_config = worker_config("rescuer");
    rescuer_config.rescue_interval = Duration::from_millis(100);
    let rescuer = RunningWorker::start(
        &db.pool,
        recording(LONG, seen.clone(), |_| Ok(())),
        rescuer_config,
        &wakeups,
    );
    let job = job_in_state(&db.pool, id, JobState::Succeeded, Duration::from_secs(15)).await;
    worker.stop().await;
    rescuer.stop().await;
    listener.cancel();
    assert_eq!(job.attempt, 1);
    assert_eq!(
        seen.lock().unwrap()[&id],
        vec![1],
        "never rescued and rerun"
    );
}

#[tokio::test]
async fn shutdown_lets_short_jobs_finish_and_hands_long_ones_back() {
    let db = TestDb::migrated().await;
    const SHORT: JobKind = JobKind::new("test.short");
    const STUCK: JobKind = JobKind::new("test.stuck");
    let short = queue::enqueue(&db.pool, &SHORT, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let stuck = queue::enqueue(&db.pool, &STUCK, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let started: Arc<Mutex<Vec<i64>>> = Default::default();
    let mut registry = Registry::new();
    let s = started.clone();
    registry.register(SHORT, move |ctx| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(ctx.id);
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok(())
        }
    });
    let s = started.clone();
    registry.register(STUCK, move |ctx| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(ctx.id);
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let mut config = worker_config("graceful");
    config.shutdown_grace = Duration::from_millis(1500);
    let (wakeups, listener) = listen(&db.pool);
    let worker = RunningWorker::start(&db.pool, registry, config, &wakeups);
    eventually(Duration::from_secs(10), "both jobs to start", || async {
        (started.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    let stopping = Instant::now();
    worker.stop().await;
    let took = stopping.elapsed();
    listener.cancel();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "stopped after {took:?}"
    );
    assert_eq!(
        queue::get(&db.pool, short).await.unwrap().state,
        JobState::Succeeded
    );
    let stuck = queue::get(&db.pool, stuck).await.unwrap();
    assert_eq!(
        stuck.state,
        JobState::Available,
        "handed back, not left leased"
    );
    assert!(stuck.last_error.unwrap().contains("released"));
    assert_eq!(stuck.lease_owner, None);
}

#[tokio::test]
async fn handler_writes_are_fenced_by_the_lease() {
    let db = TestDb::migrated().await;
    const FENCED: JobKind = JobKind::new("test.fenced").max_attempts(1);
    let id = queue::enqueue(&db.pool, &FENCED, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let results: Arc<Mutex<Vec<String>>> = Default::default();
    let mut registry = Registry::new();
    let (pool, r) = (db.pool.clone(), results.clone());
    registry.register(FENCED, move |ctx| {
        let (pool, r) = (pool.clone(), r.clone());
        async move {
            let mut tx = pool.begin().await.unwrap();
            let held = ctx.lock_lease(&mut tx).await.is_ok();
            r.lock().unwrap().push(format!("held: {held:?}"));
            tx.commit().await.unwrap();
            // Pretend this worker stalled and another took the job: the same attempt is now fenced.
            sqlx::query(include_str!("support/sql/steal_job.sql"))
                .bind(ctx.id)
                .execute(&pool)
                .await
                .unwrap();
            let mut tx = pool.begin().await.unwrap();
            let held = ctx.lock_lease(&mut tx).await.is_ok();
            r.lock().unwrap().push(format!("held: {held:?}"));
            Ok(())
        }
    });
    let (wakeups, listener) = listen(&db.pool);
    let worker = RunningWorker::start(&db.pool, registry, worker_config("fence"), &wakeups);
    eventually(Duration::from_secs(10), "handler to finish", || async {
        (results.lock().unwrap().len() == 2).then_some(())
    })
    .await;
    worker.stop().await;
    listener.cancel();
    assert_eq!(*results.lock().unwrap(), vec!["held: true", "held: false"]);
    let job = queue::get(&db.pool, id).await.unwrap();
    assert_eq!(
        job.state,
        JobState::Running,
        "the fenced attempt's success did not overwrite the new attempt"
    );
    assert_eq!(job.attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_handler_gets_concurrent_jobs_together_and_each_job_keeps_its_own_result() {
    let db = TestDb::migrated().await;
    const BATCHED: JobKind = JobKind::new("test.batched").max_attempts(1);
    const MAX_BATCH: usize = 6;
    let jobs: Vec<NewJob> = (0..60).map(|n| NewJob::new(json!({ "n": n }))).collect();
    let ids = queue::enqueue_many(&db.pool, &BATCHED, jobs).await.unwrap();
    let batch_sizes: Arc<Mutex<Vec<usize>>> = Default::default();
    let mut registry = Registry::new();
    let (pool, sizes) = (db.pool.clone(), batch_sizes.clone());
    registry.register_batched(
        BATCHED,
        MAX_BATCH,
        Duration::from_millis(5),
        move |jobs: Vec<queue::JobContext>| {
            let (pool, sizes) = (pool.clone(), sizes.clone());
            async move {
                sizes.lock().unwrap().push(jobs.len());
                // One job of the batch loses its lease before the batch fences its transaction.
                let stolen = jobs.iter().find(|j| j.payload()["n"] == 7).map(|j| j.id);
                if let Some(id) = stolen {
                    sqlx::query(include_str!("support/sql/steal_job.sql"))
                        .bind(id)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                let mut tx = pool.begin().await.unwrap();
                let held = queue::lock_leases(&mut tx, &jobs).await.unwrap();
                tx.commit().await.unwrap();
                jobs.iter()
                    .zip(held)
                    .map(|(job, held)| {
                        let n = job.payload()["n"].as_i64().unwrap();
                        match (held, n % 10) {
                            (false, _) => Err(job.lease_lost()),
                            (true, 0) => {
                                Err(queue::JobError::permanent(format!("job {n} refused")))
                            }
                            (true, _) => Ok(()),
                        }
                    })
                    .collect()
            }
        },
    );
    let (wakeups, listener) = listen(&db.pool);
    let mut config = worker_config("batched");
    config.concurrency = 16;
    config.claim_batch = 16;
    let worker = RunningWorker::start(&db.pool, registry, config, &wakeups);
    eventually(
        Duration::from_secs(20),
        "every job to be recorded",
        || async {
            let open = count_in_state(&db.pool, "available").await
                + count_in_state(&db.pool, "running").await;
            let total: usize = batch_sizes.lock().unwrap().iter().sum();
            (open == 1 && total == 60).then_some(())
        },
    )
    .await;
    worker.stop().await;
    listener.cancel();

    let sizes = batch_sizes.lock().unwrap().clone();
    assert!(
        sizes.iter().all(|&n| (1..=MAX_BATCH).contains(&n)),
        "batch sizes {sizes:?}"
    );
    assert!(
        sizes.iter().any(|&n| n > 1),
        "jobs started together share a batch: {sizes:?}"
    );
    for (n, id) in ids.iter().enumerate() {
        let job = queue::get(&db.pool, *id).await.unwrap();
        let expected = match n {
            7 => JobState::Running, // its stolen attempt (2) is still leased; attempt 1's result was fenced
            n if n % 10 == 0 => JobState::Dead,
            _ => JobState::Succeeded,
        };
        assert_eq!(job.state, expected, "job {n}");
        if expected == JobState::Dead {
            assert_eq!(
                job.last_error.as_deref(),
                Some(format!("job {n} refused").as_str())
            );
        }
    }
}
