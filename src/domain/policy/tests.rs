use super::*;
use crate::domain::labels::{AgentRole as R, RuntimeMode::*, Stage as S};

fn writer() -> Sender {
    Sender {
        login: "alice".into(),
        is_human: true,
        access: SenderAccess::Member(ProjectRole::ReadWrite),
    }
}

fn ctx() -> PolicyContext {
    PolicyContext {
        repository_connected: true,
        sender: writer(),
        project: ProjectPolicy::default(),
    }
}

fn strings(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|l| l.to_string()).collect()
}

fn label_issue(label: &str, others: &[&str]) -> PolicyEvent {
    let mut labels = strings(others);
    labels.push(label.to_owned());
    PolicyEvent::Labeled {
        target: Target::Issue(7),
        label: label.to_owned(),
        labels,
        issue_labels: vec![],
    }
}

fn label_pr(label: &str, others: &[&str], issue_labels: &[&str]) -> PolicyEvent {
    let mut labels = strings(others);
    labels.push(label.to_owned());
    PolicyEvent::Labeled {
        target: Target::PullRequest(9),
        label: label.to_owned(),
        labels,
        issue_labels: strings(issue_labels),
    }
}

fn started(decision: Decision) -> RunPlan {
    match decision {
        Decision::Start(plan) => plan,
        other => panic!("expected a run, got {other:?}"),
    }
}

/// SPEC §4, written out independently of the catalogue so the catalogue is checked, not echoed.
const EXPECTED: [(&str, Stage, AgentRole, RuntimeMode); 15] = [
    ("intake", S::Intake, R::Pm, CodeOnly),
    ("vision", S::Vision, R::Pm, CodeOnly),
    ("prd", S::Prd, R::Pm, CodeOnly),
    ("arch", S::Arch, R::Sa, FullEnv),
    ("design", S::Design, R::Sa, FullEnv),
    ("plan", S::Plan, R::Em, FullEnv),
    ("dev", S::Dev, R::Dev, FullEnv),
    ("doc-audit", S::DocAudit, R::Km, FullEnv),
    ("qa", S::Qa, R::Qa, FullEnv),
    ("release", S::Release, R::Em, FullEnv),
    ("postdeploy", S::Postdeploy, R::Sre, FullEnv),
    ("ops", S::Ops, R::Sre, FullEnv),
    ("self-improve", S::SelfImprove, R::Km, CodeOnly),
    ("rethink", S::Rethink, R::Em, FullEnv),
    ("ai-repair", S::AiRepair, R::Sre, CodeOnly),
];

#[test]
fn each_trigger_label_starts_its_stage_role_and_mode() {
    for (name, stage, role, mode) in EXPECTED {
        let label = format!("run:{name}");
        let plan = started(decide(&label_issue(&label, &["bug"]), &ctx()));
        assert_eq!(
            plan.kind,
            RunKind::Stage {
                stage,
                revise: false
            },
            "{label}"
        );
        assert_eq!((plan.role, plan.mode), (role, mode), "{label}");
        assert_eq!(plan.target, Target::Issue(7));
        assert_eq!(plan.trigger_label, label);
    }
}

#[test]
fn revise_labels_exist_for_every_stage_but_rethink_and_ai_repair() {
    for (name, stage, role, _) in EXPECTED {
        let label = format!("run:{name}:revise");
        let decision = decide(&label_issue(&label, &[]), &ctx());
        if matches!(stage, S::Rethink | S::AiRepair) {
            assert_eq!(
                decision,
                Decision::Ignore(IgnoreReason::NotATrigger),
                "{label}"
            );
        } else {
            let plan = started(decision);
            assert_eq!(
                (plan.kind, plan.role),
                (
                    RunKind::Stage {
                        stage,
                        revise: true
                    },
                    role
                ),
                "{label}"
            );
        }
    }
}

#[test]
fn need_reviewer_starts_a_reviewer_on_a_pull_request_only() {
    let plan = started(decide(&label_pr("need:reviewer", &[], &[]), &ctx()));
    assert_eq!(
        (plan.kind, plan.role, plan.mode),
        (RunKind::Reviewer, R::Reviewer, CodeOnly)
    );
    assert_eq!(plan.target, Target::PullRequest(9));
    assert_eq!(
        decide(&label_issue("need:reviewer", &[]), &ctx()),
        Decision::Ignore(IgnoreReason::NeedReviewerOnIssue)
    );
}

#[test]
fn discussion_label_starts_a_comment_only_discussion() {
    let plan = started(decide(&label_issue("mode:discussion", &[]), &ctx()));
    assert_eq!((plan.kind, plan.mode), (RunKind::Discussion, CodeOnly));
}

#[test]
fn non_trigger_labels_never_start_anything() {
    let labels = [
        "state:blocked",
        "state:in-review",
        "state:approved",
        "state:superseded",
        "state:abandoned",
        "need:input",
        "need:pm",
        "need:sa",
        "need:qa",
        "need:sre",
        "need:em",
        "need:km",
        "[ai-model-gpt-5]",
        "[ai-reasoning-low]",
        "[ai-reasoning-medium]",
        "[ai-reasoning-high]",
        "[ai-reasoning-extra-high]",
        "bug",
        "run:unknown",
        "run:",
        "run:dev:revise:again",
    ];
    for label in labels {
        assert_eq!(
            decide(&label_issue(label, &["run:dev"]), &ctx()),
            Decision::Ignore(IgnoreReason::NotATrigger),
            "{label}"
        );
    }
}

#[test]
fn two_run_labels_conflict_and_explain() {
    let decision = decide(&label_issue("run:dev", &["run:plan"]), &ctx());
    let Decision::Refuse {
        kind,
        comment,
        add_need_input,
        target,
    } = decision
    else {
        panic!("{decision:?}")
    };
    assert_eq!(
        (kind, add_need_input, target),
        (ConflictKind::TriggerConflict, false, Target::Issue(7))
    );
    assert!(
        comment.contains("run:plan") && comment.contains("run:dev"),
        "{comment}"
    );
}

#[test]
fn two_model_or_two_reasoning_labels_conflict() {
    let decision = decide(
        &label_issue("run:dev", &["[ai-model-a]", "[ai-model-b]"]),
        &ctx(),
    );
    assert!(
        matches!(
            decision,
            Decision::Refuse {
                kind: ConflictKind::ModelConflict,
                ..
            }
        ),
        "{decision:?}"
    );
    let decision = decide(
        &label_issue("run:dev", &["[ai-reasoning-low]", "[ai-reasoning-high]"]),
        &ctx(),
    );
    assert!(
        matches!(
            decision,
            Decision::Refuse {
                kind: ConflictKind::ReasoningConflict,
                ..
            }
        ),
        "{decision:?}"
    );
}

#[test]
fn model_and_reasoning_come_from_the_issue_then_the_pull_request() {
    let plan = started(decide(
        &label_issue("run:dev", &["[ai-model-o3]", "[ai-reasoning-high]"]),
        &ctx(),
    ));
    assert_eq!(
        (plan.model.as_deref(), plan.reasoning),
        (Some("o3"), Some(Reasoning::High))
    );
    let plan = started(decide(
        &label_pr("need:reviewer", &["[ai-model-pr]"], &["[ai-model-issue]"]),
        &ctx(),
    ));
    assert_eq!(
        plan.model.as_deref(),
        Some("issue"),
        "the issue's label wins"
    );
    let plan = started(decide(
        &label_pr(
            "need:reviewer",
            &["[ai-model-pr]", "[ai-reasoning-low]"],
            &[],
        ),
        &ctx(),
    ));
    assert_eq!(
        (plan.model.as_deref(), plan.reasoning),
        (Some("pr"), Some(Reasoning::Low))
    );
    let plan = started(decide(&label_issue("run:dev", &[]), &ctx()));
    assert_eq!(
        (plan.model, plan.reasoning),
        (None, None),
        "no label: the project default applies"
    );
}

fn review(state: ReviewState, pr_labels: &[&str], issue_labels: &[&str]) -> PolicyEvent {
    PolicyEvent::ReviewSubmitted {
        pr: 9,
        state,
        pr_labels: strings(pr_labels),
        issue_labels: strings(issue_labels),
    }
}

#[test]
fn changes_requested_revises_the_one_stage_on_the_pull_request() {
    let plan = started(decide(
        &review(
            ReviewState::ChangesRequested,
            &["run:dev", "state:in-review"],
            &["run:plan"],
        ),
        &ctx(),
    ));
    assert_eq!(
        plan.kind,
        RunKind::Stage {
            stage: S::Dev,
            revise: true
        }
    );
    assert_eq!(
        (plan.trigger_label.as_str(), plan.target),
        ("run:dev:revise", Target::PullRequest(9))
    );
}

#[test]
fn changes_requested_falls_back_to_the_issue_when_the_pr_has_no_stage() {
    let plan = started(decide(
        &review(
            ReviewState::ChangesRequested,
            &["state:in-review"],
            &["run:design"],
        ),
        &ctx(),
    ));
    assert_eq!(
        plan.kind,
        RunKind::Stage {
            stage: S::Design,
            revise: true
        }
    );
}

#[test]
fn changes_requested_with_no_stage_or_two_stages_asks_for_input() {
    for (pr_labels, issue_labels, mentions) in [
        (&[][..], &[][..], "neither"),
        (&["run:dev", "run:qa"][..], &[][..], "dev, qa"),
    ] {
        let decision = decide(
            &review(ReviewState::ChangesRequested, pr_labels, issue_labels),
            &ctx(),
        );
        let Decision::Refuse {
            kind,
            comment,
            add_need_input,
            ..
        } = decision
        else {
            panic!("{decision:?}")
        };
        assert_eq!(
            (kind, add_need_input),
            (ConflictKind::AmbiguousRevise, true)
        );
        assert!(comment.contains(mentions), "{comment}");
    }
}

#[test]
fn approvals_and_comments_start_nothing() {
    for state in [ReviewState::Approved, ReviewState::Commented] {
        assert_eq!(
            decide(&review(state, &["run:dev"], &[]), &ctx()),
            Decision::Ignore(IgnoreReason::ReviewNotChangesRequested)
        );
    }
}

#[test]
fn each_sender_guard() {
    let cases = [
        (true, SenderAccess::PlatformOwner, None),
        (true, SenderAccess::PlatformAdmin, None),
        (true, SenderAccess::Member(ProjectRole::Admin), None),
        (true, SenderAccess::Member(ProjectRole::ReadWrite), None),
        (
            true,
            SenderAccess::Member(ProjectRole::Read),
            Some(IgnoreReason::SenderRoleReadNotPermitted),
        ),
        (
            true,
            SenderAccess::NotMember,
            Some(IgnoreReason::SenderNotAllowed),
        ),
        (
            true,
            SenderAccess::Unknown,
            Some(IgnoreReason::SenderNotAllowed),
        ),
        (
            false,
            SenderAccess::PlatformOwner,
            Some(IgnoreReason::SenderNotHuman),
        ),
    ];
    for (is_human, access, refused) in cases {
        let mut c = ctx();
        c.sender = Sender {
            login: "someone".into(),
            is_human,
            access,
        };
        let decision = decide(&label_issue("run:dev", &[]), &c);
        match refused {
            None => assert!(
                matches!(decision, Decision::Start(_)),
                "{access:?}: {decision:?}"
            ),
            Some(reason) => assert_eq!(decision, Decision::Ignore(reason), "{access:?}"),
        }
        // The same guard applies to revise runs from reviews.
        let decision = decide(
            &review(ReviewState::ChangesRequested, &["run:dev"], &[]),
            &c,
        );
        assert_eq!(
            matches!(decision, Decision::Start(_)),
            refused.is_none(),
            "{access:?}: {decision:?}"
        );
    }
}

#[test]
fn a_repository_that_is_not_connected_triggers_nothing() {
    let mut c = ctx();
    c.repository_connected = false;
    assert_eq!(
        decide(&label_issue("run:dev", &[]), &c),
        Decision::Ignore(IgnoreReason::RepositoryNotConnected)
    );
    assert_eq!(
        decide(
            &PolicyEvent::Closed {
                target: Target::Issue(7)
            },
            &c
        ),
        Decision::Ignore(IgnoreReason::RepositoryNotConnected)
    );
    // Not a trigger is reported as such, whatever the repository.
    assert_eq!(
        decide(&label_issue("bug", &[]), &c),
        Decision::Ignore(IgnoreReason::NotATrigger)
    );
}

#[test]
fn closing_cancels_and_removing_discussion_ends_it() {
    let mut c = ctx();
    c.sender.access = SenderAccess::Unknown;
    assert_eq!(
        decide(
            &PolicyEvent::Closed {
                target: Target::PullRequest(9)
            },
            &c
        ),
        Decision::CancelActiveRuns {
            target: Target::PullRequest(9)
        }
    );
    let unlabel = |label: &str| PolicyEvent::Unlabeled {
        target: Target::Issue(7),
        label: label.into(),
    };
    assert_eq!(
        decide(&unlabel("mode:discussion"), &ctx()),
        Decision::EndDiscussion {
            target: Target::Issue(7)
        }
    );
    assert_eq!(
        decide(&unlabel("run:dev"), &ctx()),
        Decision::Ignore(IgnoreReason::NotATrigger)
    );
}

#[test]
fn projects_may_override_a_stages_runtime_mode() {
    let mut c = ctx();
    c.project.runtime_overrides.insert(S::Dev, CodeOnly);
    assert_eq!(
        started(decide(&label_issue("run:dev", &[]), &c)).mode,
        CodeOnly
    );
    assert_eq!(
        started(decide(&label_issue("run:qa", &[]), &c)).mode,
        FullEnv
    );
}

#[test]
fn the_catalogue_lists_every_managed_label_once() {
    let labels = labels::managed_labels();
    let mut unique = labels.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), labels.len());
    assert_eq!(
        labels.iter().filter(|l| l.starts_with("run:")).count(),
        15 + 13
    );
    for label in &labels {
        assert_ne!(labels::classify(label), LabelMeaning::Foreign, "{label}");
    }
}
