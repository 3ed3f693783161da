//! Leader leases and the leader-only queue maintenance, in one process against real PostgreSQL.

mod support;

use std::time::Duration;

use codex_k8s::domain::errors::RepositoryError;
use codex_k8s::leader::{self, ElectionConfig, Leadership};
use codex_k8s::queue::maintenance::{self, Retention};
use codex_k8s::queue::{self, JobKind, JobState, NewJob, Registry, Wakeups, Worker};
use serde_json::json;
use sqlx::PgPool;
use support::{TestDb, eventually, job_in_state, worker_config};
use tokio_util::sync::CancellationToken;

const OK: JobKind = JobKind::new("test.ok");
const DOOMED: JobKind = JobKind::new("test.doomed").max_attempts(1);

fn elect(
    pool: &PgPool,
    holder: &str,
    ttl: Duration,
) -> (Leadership, CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let (leadership, task) = leader::spawn_election(
        pool.clone(),
        ElectionConfig {
            name: "test-lease".into(),
            holder: holder.into(),
            ttl,
        },
        |_| {},
        stop.clone(),
    );
    (leadership, stop, task)
}

async fn lead(pool: &PgPool, holder: &str) -> (leader::LeaderGuard, CancellationToken) {
    let (leadership, stop, _) = elect(pool, holder, Duration::from_secs(30));
    let guard = eventually(Duration::from_secs(5), "leadership", || async {
        leadership.current()
    })
    .await;
    (guard, stop)
}

/// Runs one job of `OK` to success and one of `DOOMED` to death.
async fn finished_jobs(db: &TestDb) -> (i64, i64, i64) {
    let succeeded = queue::enqueue(&db.pool, &OK, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let dead = queue::enqueue(&db.pool, &DOOMED, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let mut registry = Registry::new();
    registry.register(OK, |_| async { Ok(()) });
    registry.register(DOOMED, |_| async { Err(queue::JobError::permanent("no")) });
    let stop = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            db.pool.clone(),
            registry,
            worker_config("m"),
            Default::default(),
            &Wakeups::new(),
        )
        .run(stop.clone()),
    );
    for (id, state) in [(succeeded, JobState::Succeeded), (dead, JobState::Dead)] {
        job_in_state(&db.pool, id, state, Duration::from_secs(10)).await;
    }
    stop.cancel();
    worker.await.unwrap();
    const LATER: JobKind = JobKind::new("test.later");
    let waiting = queue::enqueue(&db.pool, &LATER, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    (succeeded, dead, waiting)
}

fn exists(result: Result<queue::JobRecord, RepositoryError>) -> bool {
    match result {
        Ok(_) => true,
        Err(RepositoryError::NotFound(_)) => false,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn pruning_deletes_finished_jobs_past_their_retention_only() {
    let db = TestDb::migrated().await;
    let (succeeded, dead, waiting) = finished_jobs(&db).await;
    let (guard, _stop) = lead(&db.pool, "pruner").await;
    let hour = Duration::from_secs(3600);

    let pruned = maintenance::prune_finished(
        &db.pool,
        &guard,
        &Retention {
            succeeded: hour,
            dead: hour,
        },
    )
    .await
    .unwrap();
    assert_eq!(pruned, 0, "nothing is old enough yet");

    let pruned = maintenance::prune_finished(
        &db.pool,
        &guard,
        &Retention {
            succeeded: Duration::ZERO,
            dead: hour,
        },
    )
    .await
    .unwrap();
    assert_eq!(pruned, 1);
    assert!(!exists(queue::get(&db.pool, succeeded).await));
    assert!(
        exists(queue::get(&db.pool, dead).await),
        "dead jobs are kept longer for staff"
    );

    let pruned = maintenance::prune_finished(
        &db.pool,
        &guard,
        &Retention {
            succeeded: Duration::ZERO,
            dead: Duration::ZERO,
        },
    )
    .await
    .unwrap();
    assert_eq!(pruned, 1);
    assert!(!exists(queue::get(&db.pool, dead).await));
    assert!(
        exists(queue::get(&db.pool, waiting).await),
        "unfinished jobs are never pruned"
    );
}

#[tokio::test]
async fn unknown_kind_gets_an_error_recorded_and_keeps_waiting() {
    let db = TestDb::migrated().await;
    const MYSTERY: JobKind = JobKind::new("mystery.kind");
    let mystery = queue::enqueue(&db.pool, &MYSTERY, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let known = queue::enqueue(&db.pool, &OK, NewJob::new(json!({})))
        .await
        .unwrap()
        .unwrap();
    let (guard, _stop) = lead(&db.pool, "flagger").await;

    let flagged = maintenance::flag_unknown_kinds(&db.pool, &guard, &["test.ok".to_owned()])
        .await
        .unwrap();
    assert_eq!(flagged, vec![mystery]);
    let job = queue::get(&db.pool, mystery).await.unwrap();
    assert_eq!(job.state, JobState::Available);
    assert_eq!(
        job.last_error.as_deref(),
        Some("unknown job kind 'mystery.kind': no handler is registered for it in this build")
    );
    assert_eq!(queue::get(&db.pool, known).await.unwrap().last_error, None);
    let again = maintenance::flag_unknown_kinds(&db.pool, &guard, &["test.ok".to_owned()])
        .await
        .unwrap();
    assert!(again.is_empty(), "flagging is idempotent");
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_deposed_leader_cannot_act() {
    let db = TestDb::migrated().await;
    let ttl = Duration::from_secs(1);
    let (a, stop_a, task_a) = elect(&db.pool, "a", ttl);
    let guard_a = eventually(Duration::from_secs(5), "a to lead", || async {
        a.current()
    })
    .await;
    let (b, stop_b, _task_b) = elect(&db.pool, "b", ttl);
    tokio::time::sleep(ttl).await;
    assert!(
        a.current().is_some() && b.current().is_none(),
        "a keeps the lease by renewing it"
    );

    // a stops: it releases the lease, b takes over with a higher term.
    stop_a.cancel();
    task_a.await.unwrap();
    assert!(a.current().is_none());
    let guard_b = eventually(Duration::from_secs(5), "b to take over", || async {
        b.current()
    })
    .await;
    assert!(guard_b.term() > guard_a.term());

    let mut tx = db.pool.begin().await.unwrap();
    assert!(
        matches!(
            guard_a.confirm(&mut tx).await,
            Err(RepositoryError::Conflict(_))
        ),
        "a's old term is refused"
    );
    drop(tx);
    let (_, dead, _) = finished_jobs(&db).await;
    let all = Retention {
        succeeded: Duration::ZERO,
        dead: Duration::ZERO,
    };
    assert!(
        maintenance::prune_finished(&db.pool, &guard_a, &all)
            .await
            .is_err(),
        "a deposed leader prunes nothing"
    );
    assert!(exists(queue::get(&db.pool, dead).await));
    assert_eq!(
        maintenance::prune_finished(&db.pool, &guard_b, &all)
            .await
            .unwrap(),
        2
    );
    stop_b.cancel();
}
