//! A local stand-in for GitHub's REST API (test-only): issue comments and labels with the JSON GitHub
//! returns, every call recorded, and rate-limit answers (403/429 with `retry-after`) on demand.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State_ {
    next_id: u64,
    /// (owner/repo, number) → comments (id, body)
    comments: BTreeMap<(String, u64), Vec<(u64, String)>>,
    labels: BTreeMap<(String, u64), Vec<String>>,
    reactions: BTreeMap<(String, u64), Vec<String>>,
    calls: Vec<Call>,
    /// Answers to give before serving normally: (status, retry-after seconds, message).
    refusals: Vec<(u16, Option<u64>, String)>,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<State_>>);

pub struct FakeGithub {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn user(login: &str) -> Value {
    let base = format!("https://api.github.com/users/{login}");
    json!({
        "login": login, "id": 1, "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4", "gravatar_id": "",
        "url": base, "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{base}/followers"), "following_url": format!("{base}/following{{/other_user}}"),
        "gists_url": format!("{base}/gists{{/gist_id}}"), "starred_url": format!("{base}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{base}/subscriptions"), "organizations_url": format!("{base}/orgs"),
        "repos_url": format!("{base}/repos"), "events_url": format!("{base}/events{{/privacy}}"),
        "received_events_url": format!("{base}/received_events"), "type": "Bot", "site_admin": false,
    })
}

fn comment_json(repo: &str, number: u64, id: u64, body: &str) -> Value {
    json!({
        "id": id, "node_id": format!("IC_{id}"),
        "url": format!("https://api.github.com/repos/{repo}/issues/comments/{id}"),
        "html_url": format!("https://github.com/{repo}/issues/{number}#issuecomment-{id}"),
        "issue_url": format!("https://api.github.com/repos/{repo}/issues/{number}"),
        "body": body, "user": user("codex-bot"),
        "created_at": "2026-11-22T12:00:00Z", "updated_at": "2026-11-22T12:00:00Z",
        "author_association": "NONE",
    })
}

fn label_json(repo: &str, name: &str) -> Value {
    json!({
        "id": 208045946, "node_id": "MDU6TGFiZWwyMDgwNDU5NDY=",
        "url": format!("https://api.github.com/repos/{repo}/labels/{name}"),
        "name": name, "description": null, "color": "ededed", "default": false,
    })
}

/// The labels an issue now has, as GitHub answers label changes.
fn labels_json(repo: &str, labels: &[String]) -> Response {
    axum::Json(
        labels
            .iter()
            .map(|l| label_json(repo, l))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

fn error(status: u16, message: &str) -> Response {
    let body = json!({ "message": message, "documentation_url": "https://docs.github.com/rest" });
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

impl FakeGithub {
    pub async fn start() -> Self {
        let shared = Shared(Arc::new(Mutex::new(State_ {
            next_id: 1_000,
            ..State_::default()
        })));
        let app = Router::new()
            // `issues/{number}/comments` and `issues/comments/{id}` share one shape; see `comments`.
            .route(
                "/repos/{owner}/{repo}/issues/{first}/{second}",
                get(comments).post(comments).patch(comments),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/labels/{name}",
                delete(remove_label),
            )
            .fallback(|| async { error(404, "Not Found") })
            .layer(axum::middleware::from_fn_with_state(shared.clone(), record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.0.lock().unwrap().calls.clone()
    }

    /// Comment bodies on `repo` (`owner/name`) item `number`.
    pub fn comments(&self, repo: &str, number: u64) -> Vec<String> {
        let state = self.shared.0.lock().unwrap();
        state
            .comments
            .get(&(repo.to_owned(), number))
            .map(|c| c.iter().map(|(_, b)| b.clone()).collect())
            .unwrap_or_default()
    }

    pub fn labels(&self, repo: &str, number: u64) -> Vec<String> {
        self.shared
            .0
            .lock()
            .unwrap()
            .labels
            .get(&(repo.to_owned(), number))
            .cloned()
            .unwrap_or_default()
    }

    /// Reactions on `repo` item `number`.
    pub fn reactions(&self, repo: &str, number: u64) -> Vec<String> {
        self.shared
            .0
            .lock()
            .unwrap()
            .reactions
            .get(&(repo.to_owned(), number))
            .cloned()
            .unwrap_or_default()
    }

    /// The next request is answered `status` with `retry-after` (a secondary rate limit when 403).
    pub fn refuse_next(&self, status: u16, retry_after: Option<u64>, message: &str) {
        self.shared
            .0
            .lock()
            .unwrap()
            .refusals
            .push((status, retry_after, message.to_owned()));
    }
}

/// Records the call, or answers with a queued refusal instead of serving it.
async fn record(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let refusal = {
        let mut state = shared.0.lock().unwrap();
        state.calls.push(Call {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            authorization: parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        });
        (!state.refusals.is_empty()).then(|| state.refusals.remove(0))
    };
    if let Some((status, retry_after, message)) = refusal {
        let mut response = error(status, &message);
        let headers = response.headers_mut();
        if let Some(secs) = retry_after {
            headers.insert(
                "retry-after",
                HeaderValue::from_str(&secs.to_string()).unwrap(),
            );
        }
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
        return response;
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// `GET|POST issues/{number}/comments`, `POST issues/{number}/labels` and `PATCH|POST
/// issues/comments/{id}`, told apart by position.
async fn comments(
    State(shared): State<Shared>,
    method: axum::http::Method,
    Path((owner, repo, first, second)): Path<(String, String, String, String)>,
    Query(paging): Query<Paging>,
    body: axum::body::Bytes,
) -> Response {
    let parse = |s: &str| s.parse::<u64>().ok();
    match (method.as_str(), first.as_str(), second.as_str()) {
        // GitHub takes POST wherever it takes PATCH (for clients without PATCH); octocrab uses it.
        ("PATCH" | "POST", "comments", id) => match (parse(id), serde_json::from_slice(&body)) {
            (Some(id), Ok(input)) => {
                update_comment(State(shared), Path((owner, repo, id)), axum::Json(input)).await
            }
            _ => error(422, "Validation Failed"),
        },
        ("POST", number, "reactions") => {
            match (parse(number), serde_json::from_slice::<Value>(&body)) {
                (Some(n), Ok(input)) => {
                    let content = input["content"].as_str().unwrap_or_default().to_owned();
                    let mut state = shared.0.lock().unwrap();
                    let reactions = state
                        .reactions
                        .entry((format!("{owner}/{repo}"), n))
                        .or_default();
                    let created = !reactions.contains(&content);
                    if created {
                        reactions.push(content.clone());
                    }
                    let reaction = json!({ "id": 1, "node_id": "MDg6UmVhY3Rpb24x", "user": user("codex-bot"),
                    "content": content, "created_at": "2026-11-22T12:00:00Z" });
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    (status, axum::Json(reaction)).into_response()
                }
                _ => error(422, "Validation Failed"),
            }
        }
        ("GET", number, "comments") => match parse(number) {
            Some(n) => list_comments(State(shared), Path((owner, repo, n)), Query(paging)).await,
            None => error(404, "Not Found"),
        },
        ("POST", number, "comments") => match (parse(number), serde_json::from_slice(&body)) {
            (Some(n), Ok(input)) => {
                create_comment(State(shared), Path((owner, repo, n)), axum::Json(input)).await
            }
            _ => error(422, "Validation Failed"),
        },
        ("POST", number, "labels") => match (parse(number), serde_json::from_slice(&body)) {
            (Some(n), Ok(input)) => {
                add_labels(State(shared), Path((owner, repo, n)), axum::Json(input)).await
            }
            _ => error(422, "Validation Failed"),
        },
        _ => error(404, "Not Found"),
    }
}

#[derive(Deserialize)]
struct Paging {
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list_comments(
    State(shared): State<Shared>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Query(paging): Query<Paging>,
) -> Response {
    let name = format!("{owner}/{repo}");
    let state = shared.0.lock().unwrap();
    let all = state
        .comments
        .get(&(name.clone(), number))
        .cloned()
        .unwrap_or_default();
    let per_page = paging.per_page.unwrap_or(30).clamp(1, 100);
    let page = paging.page.unwrap_or(1).max(1);
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(id, body)| comment_json(&name, number, *id, body))
        .collect();
    axum::Json(items).into_response()
}

#[derive(Deserialize)]
struct CommentBody {
    body: String,
}

async fn create_comment(
    State(shared): State<Shared>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    axum::Json(input): axum::Json<CommentBody>,
) -> Response {
    let name = format!("{owner}/{repo}");
    let mut state = shared.0.lock().unwrap();
    state.next_id += 1;
    let id = state.next_id;
    state
        .comments
        .entry((name.clone(), number))
        .or_default()
        .push((id, input.body.clone()));
    (
        StatusCode::CREATED,
        axum::Json(comment_json(&name, number, id, &input.body)),
    )
        .into_response()
}

async fn update_comment(
    State(shared): State<Shared>,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    axum::Json(input): axum::Json<CommentBody>,
) -> Response {
    let name = format!("{owner}/{repo}");
    let mut state = shared.0.lock().unwrap();
    for ((repo_name, number), comments) in state.comments.iter_mut() {
        if *repo_name != name {
            continue;
        }
        if let Some(comment) = comments.iter_mut().find(|(cid, _)| *cid == id) {
            comment.1 = input.body.clone();
            return axum::Json(comment_json(&name, *number, id, &input.body)).into_response();
        }
    }
    error(404, "Not Found")
}

#[derive(Deserialize)]
struct LabelsBody {
    labels: Vec<String>,
}

async fn add_labels(
    State(shared): State<Shared>,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    axum::Json(input): axum::Json<LabelsBody>,
) -> Response {
    let name = format!("{owner}/{repo}");
    let mut state = shared.0.lock().unwrap();
    let labels = state.labels.entry((name.clone(), number)).or_default();
    for label in input.labels {
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    labels_json(&name, labels)
}

async fn remove_label(
    State(shared): State<Shared>,
    Path((owner, repo, number, label)): Path<(String, String, u64, String)>,
) -> Response {
    let name = format!("{owner}/{repo}");
    let mut state = shared.0.lock().unwrap();
    let labels = state.labels.entry((name.clone(), number)).or_default();
    let Some(at) = labels.iter().position(|l| *l == label) else {
        return error(404, "Label does not exist");
    };
    labels.remove(at);
    labels_json(&name, labels)
}
