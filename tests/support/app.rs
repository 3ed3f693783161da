//! The service started in process on a random port, with typed helpers for the calls tests make.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use codex_k8s::cli::Role;
use codex_k8s::config::Config;
use codex_k8s::serve::{self, Running};
use tokio_util::sync::CancellationToken;

/// The webhook secret every test service accepts (next to an "old" one, to exercise rotation).
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";
pub const OLD_WEBHOOK_SECRET: &str = "previous-webhook-secret";

pub struct TestService {
    running: Running,
    stop: CancellationToken,
    pub base: String,
    pub http: reqwest::Client,
}

/// A reply: status and body text.
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.body))
    }
}

/// A kubeconfig naming a cluster nobody listens on: for services whose worker role must start but
/// whose test does not reach Kubernetes.
pub fn unreachable_kubeconfig() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "codex-k8s-unreachable-kubeconfig-{}.yaml",
            std::process::id()
        ));
        let yaml = "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster:\n    server: http://127.0.0.1:9\ncontexts:\n- name: none\n  context:\n    cluster: none\n    user: none\nusers:\n- name: none\n  user: {}\ncurrent-context: none\n";
        std::fs::write(&path, yaml).expect("write kubeconfig");
        path.display().to_string()
    })
    .clone()
}

impl TestService {
    pub async fn start(database_url: &str, roles: &[Role]) -> Self {
        Self::start_with(database_url, roles, &[]).await
    }

    pub async fn start_with(database_url: &str, roles: &[Role], extra: &[(&str, &str)]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let secrets = format!("{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}");
        let mut env: HashMap<String, String> = [
            ("CODEXK8S_DATABASE_URL", database_url),
            ("CODEXK8S_HTTP_ADDR", "127.0.0.1:0"),
            ("CODEXK8S_DATABASE_ACQUIRE_TIMEOUT", "1s"),
            ("CODEXK8S_LEADER_LEASE_TTL", "1s"),
            ("CODEXK8S_SHUTDOWN_GRACE", "2s"),
            ("CODEXK8S_GITHUB_WEBHOOK_SECRETS", secrets.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if roles.contains(&Role::Worker) {
            env.insert("KUBECONFIG".into(), unreachable_kubeconfig());
        }
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_env(&env).expect("valid test configuration");
        let stop = CancellationToken::new();
        let running = serve::start(&config, roles, stop.clone())
            .await
            .expect("service starts");
        let base = format!("http://{}", running.http_addr);
        Self {
            running,
            stop,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }

    /// Posts a webhook with the given headers (name, value) and body.
    pub async fn post_webhook_raw(&self, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        let mut request = self
            .http
            .post(format!("{}/api/v1/webhooks/github", self.base))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("request");
        Reply {
            status: response.status().as_u16(),
            body: response.text().await.expect("body"),
        }
    }

    /// Posts `body` as GitHub would: event and delivery headers, JSON, signed with the current secret.
    pub async fn post_webhook(&self, event: &str, delivery: &str, body: &[u8]) -> Reply {
        self.post_webhook_raw(
            &github_headers(event, delivery, WEBHOOK_SECRET, body),
            body.to_vec(),
        )
        .await
    }

    pub async fn stop(self) -> Duration {
        let started = Instant::now();
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.running.wait())
            .await
            .expect("service stops in time");
        started.elapsed()
    }
}

/// The headers GitHub sends with a delivery of `body`.
pub fn github_headers(
    event: &str,
    delivery: &str,
    secret: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", event.to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        (
            "X-Hub-Signature-256",
            codex_k8s::gateway::sign(secret, body),
        ),
        ("Content-Type", "application/json".to_owned()),
        ("User-Agent", "GitHub-Hookshot/test".to_owned()),
    ]
}
