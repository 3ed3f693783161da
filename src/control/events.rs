//! Typed views of stored GitHub payloads: only the fields the label policy reads.

use serde::Deserialize;

use crate::domain::policy::{PolicyEvent, ReviewState, Target};

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Item {
    number: u64,
    #[serde(default)]
    labels: Vec<Named>,
}

#[derive(Deserialize)]
struct Sender {
    login: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Repository {
    id: i64,
}

#[derive(Deserialize)]
struct Review {
    state: String,
}

#[derive(Deserialize)]
struct Envelope {
    action: Option<String>,
    repository: Option<Repository>,
    sender: Option<Sender>,
    issue: Option<Item>,
    pull_request: Option<Item>,
    label: Option<Named>,
    review: Option<Review>,
}

/// What the control role needs from one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    pub repository_external_id: Option<i64>,
    pub sender_login: Option<String>,
    pub sender_is_user: bool,
    /// `None`: the event carries nothing the label policy acts on.
    pub policy_event: Option<PolicyEvent>,
}

fn names(item: &Item) -> Vec<String> {
    item.labels.iter().map(|l| l.name.clone()).collect()
}

/// Parses a stored payload (JSON text) of event `event_name`, building only the fields the policy
/// reads. An error means the payload is not what GitHub sends for that event.
pub fn parse(event_name: &str, payload: &str) -> Result<ParsedEvent, String> {
    let envelope: Envelope = serde_json::from_str(payload)
        .map_err(|e| format!("malformed {event_name} payload: {e}"))?;
    let action = envelope.action.as_deref().unwrap_or_default();
    let missing = |what: &str| format!("{event_name}.{action} payload has no {what}");
    let target_of = |event_name: &str| -> Result<(Target, &Item), String> {
        match event_name {
            "issues" => envelope
                .issue
                .as_ref()
                .map(|i| (Target::Issue(i.number), i))
                .ok_or_else(|| missing("issue")),
            _ => envelope
                .pull_request
                .as_ref()
                .map(|p| (Target::PullRequest(p.number), p))
                .ok_or_else(|| missing("pull_request")),
        }
    };
    let label_of = || {
        envelope
            .label
            .as_ref()
            .map(|l| l.name.clone())
            .ok_or_else(|| missing("label"))
    };
    let policy_event = match (event_name, action) {
        ("issues" | "pull_request", "labeled") => {
            let (target, item) = target_of(event_name)?;
            let label = label_of()?;
            let mut labels = names(item);
            if !labels.contains(&label) {
                labels.push(label.clone());
            }
            // The linked issue's labels are not in a pull request's payload.
            Some(PolicyEvent::Labeled {
                target,
                label,
                labels,
                issue_labels: Vec::new(),
            })
        }
        ("issues" | "pull_request", "unlabeled") => {
            let (target, _) = target_of(event_name)?;
            let label = label_of()?;
            Some(PolicyEvent::Unlabeled { target, label })
        }
        ("issues" | "pull_request", "closed") => Some(PolicyEvent::Closed {
            target: target_of(event_name)?.0,
        }),
        ("pull_request_review", "submitted") => {
            let (Target::PullRequest(pr), item) = target_of(event_name)? else {
                unreachable!("reviews are on PRs")
            };
            let state = match envelope
                .review
                .as_ref()
                .ok_or_else(|| missing("review"))?
                .state
                .to_ascii_lowercase()
                .as_str()
            {
                "changes_requested" => ReviewState::ChangesRequested,
                "approved" => ReviewState::Approved,
                _ => ReviewState::Commented,
            };
            Some(PolicyEvent::ReviewSubmitted {
                pr,
                state,
                pr_labels: names(item),
                issue_labels: Vec::new(),
            })
        }
        _ => None,
    };
    Ok(ParsedEvent {
        repository_external_id: envelope.repository.as_ref().map(|r| r.id),
        sender_login: envelope.sender.as_ref().map(|s| s.login.clone()),
        sender_is_user: envelope.sender.as_ref().is_some_and(|s| s.kind == "User"),
        policy_event,
    })
}
