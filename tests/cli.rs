//! The real `codex-k8s` binary: configuration errors, role parsing, migrate, serve and SIGTERM.

mod support;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{TestDb, eventually};

const BIN: &str = env!("CARGO_BIN_EXE_codex-k8s");
const EXIT_CONFIG: i32 = 78;

/// Runs the binary with exactly `env` (nothing inherited but PATH).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run codex-k8s")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const VALID_DB: (&str, &str) = (
    "CODEXK8S_DATABASE_URL",
    "postgres://codex:s3cr3t-pw@127.0.0.1:1/codex",
);

#[test]
fn each_command_refuses_to_start_without_the_database_url() {
    for command in [&["serve"][..], &["migrate"], &["config"]] {
        let output = run(command, &[]);
        assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{command:?}");
        let err = stderr(&output);
        assert!(
            err.contains("CODEXK8S_DATABASE_URL is not set"),
            "{command:?}: {err}"
        );
    }
}

#[test]
fn each_malformed_variable_is_named_and_stops_start_up() {
    let cases = [
        ("CODEXK8S_DATABASE_URL", "http://example.com/db"),
        ("CODEXK8S_HTTP_ADDR", "everywhere"),
        ("CODEXK8S_PUBLIC_URL", "not a url"),
        ("CODEXK8S_LOG_FORMAT", "yaml"),
        ("CODEXK8S_LOG_FILTER", "a=b=c"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("CODEXK8S_DATABASE_MAX_CONNECTIONS", "many"),
        ("CODEXK8S_QUEUE_CONCURRENCY", "-1"),
        ("CODEXK8S_QUEUE_CLAIM_BATCH", "0"),
        ("CODEXK8S_QUEUE_LEASE", "forever"),
        ("CODEXK8S_QUEUE_POLL_INTERVAL", "2"),
        ("CODEXK8S_QUEUE_RESCUE_INTERVAL", "x"),
        ("CODEXK8S_SHUTDOWN_GRACE", "x"),
        ("CODEXK8S_JOBS_RETENTION", "x"),
        ("CODEXK8S_DEAD_JOBS_RETENTION", "x"),
        ("CODEXK8S_LEADER_LEASE_TTL", "100ms"),
        ("CODEXK8S_DATABASE_ACQUIRE_TIMEOUT", "x"),
    ];
    for (variable, bad) in cases {
        let env = if variable == VALID_DB.0 {
            vec![(variable, bad)]
        } else {
            vec![VALID_DB, (variable, bad)]
        };
        let output = run(&["serve"], &env);
        assert_eq!(output.status.code(), Some(EXIT_CONFIG), "{variable}={bad}");
        let err = stderr(&output);
        assert!(
            err.contains(&format!("- {variable} ")),
            "{variable}={bad}: {err}"
        );
    }
}

#[test]
fn the_gateway_refuses_to_start_without_a_webhook_secret() {
    let output = run(&["serve", "--role=gateway"], &[VALID_DB]);
    assert_eq!(output.status.code(), Some(EXIT_CONFIG));
    assert!(
        stderr(&output).contains("CODEXK8S_GITHUB_WEBHOOK_SECRETS is not set"),
        "{}",
        stderr(&output)
    );
    let output = run(
        &["config"],
        &[
            VALID_DB,
            ("CODEXK8S_GITHUB_WEBHOOK_SECRETS", "sup3r-s3cret,older"),
        ],
    );
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(
        out.contains("CODEXK8S_GITHUB_WEBHOOK_SECRETS=(2 secret(s), masked)")
            && !out.contains("sup3r"),
        "{out}"
    );
}

#[test]
fn unknown_role_is_a_usage_error() {
    let output = run(&["serve", "--role=gateway,janitor"], &[VALID_DB]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("janitor") && err.contains("gateway, control, worker"),
        "{err}"
    );
}

#[test]
fn config_prints_every_variable_with_secrets_masked() {
    let output = run(&["config"], &[VALID_DB]);
    assert!(output.status.success());
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(!out.contains("s3cr3t-pw"), "{out}");
    assert!(
        out.contains("CODEXK8S_DATABASE_URL=postgres://codex:****@127.0.0.1:1/codex"),
        "{out}"
    );
    assert!(out.contains("CODEXK8S_HTTP_ADDR=0.0.0.0:8080"));
    assert!(out.contains("CODEXK8S_QUEUE_LEASE=30s"));
}

#[test]
fn version_and_help_answer() {
    let output = run(&["--version"], &[]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("codex-k8s {}", env!("CARGO_PKG_VERSION"))
    );
    let output = run(&["serve", "--help"], &[]);
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("--role <ROLES>")
    );
}

#[tokio::test]
async fn two_migrate_processes_at_once_both_succeed() {
    let db = TestDb::empty().await;
    let spawn = || {
        Command::new(BIN)
            .arg("migrate")
            .env_clear()
            .env("CODEXK8S_DATABASE_URL", &db.url)
            .env("CODEXK8S_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let status = codex_k8s::store::migrations::status(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, codex_k8s::store::migrations::SchemaStatus::Current);
}

#[test]
fn migrate_gives_up_on_an_unreachable_database_with_a_clear_message() {
    let started = Instant::now();
    let output = run(
        &["migrate", "--wait", "1s"],
        &[VALID_DB, ("CODEXK8S_LOG_FORMAT", "text")],
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(
            "CODEXK8S_DATABASE_URL: cannot connect to postgres://codex:****@127.0.0.1:1/codex"
        ),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-pw"));
    assert!(started.elapsed() < Duration::from_secs(15));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `codex-k8s serve` as a child process on a free port, with the given extra environment.
struct ServeProcess {
    child: tokio::process::Child,
    addr: String,
}

impl ServeProcess {
    async fn start(args: &[&str], db: &TestDb, extra_env: &[(&str, String)]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = tokio::process::Command::new(BIN)
            .arg("serve")
            .args(args)
            .env_clear()
            .env("CODEXK8S_DATABASE_URL", &db.url)
            .env("CODEXK8S_HTTP_ADDR", &addr)
            .env("CODEXK8S_GITHUB_WEBHOOK_SECRETS", "cli-test-secret")
            .env("KUBECONFIG", support::app::unreachable_kubeconfig())
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        eventually(
            Duration::from_secs(20),
            "the service to be ready",
            || async {
                let r = http
                    .get(format!("http://{addr}/readyz"))
                    .send()
                    .await
                    .ok()?;
                (r.status() == 200).then_some(())
            },
        )
        .await;
        Self { child, addr }
    }

    /// Sends SIGTERM, expects a clean exit in time, and returns what the process logged.
    async fn terminate(self) -> String {
        // SAFETY: signalling our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id().unwrap() as i32, libc::SIGTERM) },
            0
        );
        let output = tokio::time::timeout(Duration::from_secs(15), self.child.wait_with_output())
            .await
            .expect("stops in time")
            .unwrap();
        assert!(output.status.success(), "exit status {:?}", output.status);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

#[tokio::test]
async fn serve_answers_probes_and_stops_cleanly_on_sigterm() {
    let db = TestDb::migrated().await;
    let serve =
        ServeProcess::start(&["--role", "gateway", "--role=control,worker"], &db, &[]).await;
    let logs = serve.terminate().await;
    let first = logs
        .lines()
        .find(|l| l.contains("codex-k8s started"))
        .expect("start is logged");
    let line: serde_json::Value = serde_json::from_str(first).expect("logs are JSON by default");
    assert_eq!(line["roles"], "[Gateway, Control, Worker]");
    assert!(logs.contains("SIGTERM received"));
}

#[tokio::test]
async fn traces_are_exported_over_otlp_when_an_endpoint_is_set() {
    use std::sync::{Arc, Mutex};
    // A stand-in OTLP/HTTP collector that records what it receives.
    let received: Arc<Mutex<Vec<(String, String, usize)>>> = Default::default();
    let r = received.clone();
    let collector = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let r = r.clone();
        async move {
            let path = req.uri().path().to_owned();
            let content_type = req
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let body = axum::body::to_bytes(req.into_body(), usize::MAX)
                .await
                .unwrap();
            r.lock().unwrap().push((path, content_type, body.len()));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let db = TestDb::migrated().await;
    let endpoint = format!("http://{collector_addr}");
    let serve = ServeProcess::start(
        &["--role=gateway"],
        &db,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)],
    )
    .await;
    let _ = reqwest::get(format!("http://{}/healthz", serve.addr))
        .await
        .unwrap();
    serve.terminate().await;
    let received = received.lock().unwrap();
    assert!(
        received.iter().any(|(path, ct, len)| path == "/v1/traces"
            && ct == "application/x-protobuf"
            && *len > 0),
        "the collector received traces on shutdown at the latest: {received:?}"
    );
}
