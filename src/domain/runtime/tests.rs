use std::time::Duration;

use chrono::{TimeZone, Utc};
use uuid::Uuid;

use super::*;

const LIMITS: PodLimits = PodLimits {
    pending: Duration::from_secs(600),
    unschedulable: Duration::from_secs(300),
    deadline: Duration::from_secs(3600),
};

fn reason(f: Option<PodFailure>) -> String {
    f.expect("a failure").reason
}

fn pod(phase: PodPhase) -> PodObservation {
    PodObservation {
        run_id: Uuid::nil(),
        attempt: 1,
        namespace: "ns".into(),
        pod: "p".into(),
        job_name: Some("j".into()),
        phase,
        disrupted: false,
        created_at: Some(Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()),
        unschedulable_since: None,
        stuck_reason: None,
        exit: None,
        reason: None,
    }
}

fn at(minute: u32, second: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, minute, second)
        .unwrap()
}

#[test]
fn issue_namespaces_are_dns_safe_and_short() {
    assert_eq!(issue_namespace("codex", "hello", 42), "codex-hello-i42");
    assert_eq!(
        issue_namespace("codex", "My_Project.x", 7),
        "codex-my-project-x-i7"
    );
    let long = "a".repeat(80);
    let other = format!("{}b", "a".repeat(79));
    let (a, b) = (
        issue_namespace("codex", &long, 1),
        issue_namespace("codex", &other, 1),
    );
    assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
    assert_ne!(a, b, "shortened names keep distinct projects apart");
    assert!(a.ends_with("-i1") && a.starts_with("codex-aaa"));
    assert!(
        a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    );
}

#[test]
fn workload_names_are_deterministic_per_attempt() {
    let id = RunIdentity {
        run_id: Uuid::from_u128(0xabc),
        attempt: 1,
        project: "p".into(),
    };
    let again = id.clone();
    assert_eq!(id.workload_name(), again.workload_name());
    assert_eq!(
        id.workload_name(),
        "codex-run-00000000000000000000000000000abc-a1"
    );
    let next = RunIdentity {
        attempt: 2,
        ..id.clone()
    };
    assert_ne!(id.workload_name(), next.workload_name());
    assert!(
        id.workload_name().len() + 6 <= 63,
        "pod names derived from it stay valid"
    );
}

#[test]
fn failures_name_their_cause() {
    let now = at(1, 0);
    let mut exit = pod(PodPhase::Failed);
    exit.exit = Some(ContainerExit {
        code: 3,
        reason: Some("Error".into()),
    });
    let ended = failure_of(&exit, now, &LIMITS).unwrap();
    assert_eq!(ended.reason, "the agent exited with code 3");
    assert!(
        !ended.stop_workload,
        "a pod that ended keeps its Job until its TTL"
    );
    let mut oom = pod(PodPhase::Failed);
    oom.exit = Some(ContainerExit {
        code: 137,
        reason: Some("OOMKilled".into()),
    });
    assert!(reason(failure_of(&oom, now, &LIMITS)).contains("OOMKilled"));
    let mut deadline = pod(PodPhase::Failed);
    deadline.reason = Some("DeadlineExceeded".into());
    assert!(reason(failure_of(&deadline, now, &LIMITS)).contains("DeadlineExceeded"));
    let mut pull = pod(PodPhase::Pending);
    pull.stuck_reason = Some("ImagePullBackOff".into());
    let stuck = failure_of(&pull, now, &LIMITS).unwrap();
    assert!(stuck.reason.contains("ImagePullBackOff") && stuck.stop_workload);
    assert_eq!(failure_of(&pod(PodPhase::Running), now, &LIMITS), None);
    assert_eq!(failure_of(&pod(PodPhase::Succeeded), now, &LIMITS), None);
}

#[test]
fn waiting_pods_fail_only_after_their_limit() {
    let pending = pod(PodPhase::Pending);
    assert_eq!(failure_of(&pending, at(9, 59), &LIMITS), None);
    assert_eq!(next_check(&pending, &LIMITS), Some(at(10, 0)));
    assert!(reason(failure_of(&pending, at(10, 1), &LIMITS)).contains("pending"));

    let mut unschedulable = pod(PodPhase::Pending);
    unschedulable.unschedulable_since = Some(at(1, 0));
    assert_eq!(failure_of(&unschedulable, at(5, 59), &LIMITS), None);
    assert_eq!(next_check(&unschedulable, &LIMITS), Some(at(6, 0)));
    assert!(reason(failure_of(&unschedulable, at(6, 1), &LIMITS)).contains("Unschedulable"));

    let running = pod(PodPhase::Running);
    let one_hour_in = Utc.with_ymd_and_hms(2026, 1, 1, 13, 0, 0).unwrap();
    assert_eq!(next_check(&running, &LIMITS), Some(one_hour_in));
    assert_eq!(failure_of(&running, at(59, 59), &LIMITS), None);
    let late = failure_of(
        &running,
        one_hour_in + chrono::Duration::seconds(1),
        &LIMITS,
    )
    .unwrap();
    assert!(late.reason.contains("deadline") && late.stop_workload);
    assert_eq!(next_check(&pod(PodPhase::Succeeded), &LIMITS), None);
}
