use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors_for(pairs: &[(&str, &str)]) -> Vec<ConfigError> {
    Config::from_env(&env(pairs))
        .expect_err("configuration should be rejected")
        .0
}

const DB: (&str, &str) = (
    "CODEXK8S_DATABASE_URL",
    "postgres://codex:hunter2@db.internal:5432/codex",
);

#[test]
fn defaults_apply_when_only_the_database_is_set() {
    let config = Config::from_env(&env(&[DB])).unwrap();
    assert_eq!(config.http_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.queue.lease, Duration::from_secs(30));
    assert_eq!(config.queue.concurrency, 16);
    assert_eq!(config.leader.lease_ttl, Duration::from_secs(10));
    assert!(config.otlp_endpoint.is_none());
}

#[test]
fn missing_database_url_is_named_with_an_example() {
    let errors = errors_for(&[]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].variable, "CODEXK8S_DATABASE_URL");
    assert!(
        errors[0].problem.contains("is not set"),
        "{}",
        errors[0].problem
    );
    assert!(
        errors[0].problem.contains("postgres://"),
        "{}",
        errors[0].problem
    );
}

#[test]
fn blank_value_counts_as_missing() {
    let errors = errors_for(&[("CODEXK8S_DATABASE_URL", "  ")]);
    assert_eq!(errors[0].variable, "CODEXK8S_DATABASE_URL");
}

#[test]
fn every_malformed_variable_is_reported_at_once() {
    let errors = errors_for(&[
        DB,
        ("CODEXK8S_HTTP_ADDR", "localhost"),
        ("CODEXK8S_LOG_FORMAT", "xml"),
        ("CODEXK8S_QUEUE_LEASE", "soon"),
        ("CODEXK8S_QUEUE_CONCURRENCY", "0"),
        ("CODEXK8S_PUBLIC_URL", "not a url"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "::"),
        ("CODEXK8S_LOG_FILTER", "codex_k8s=loud"),
    ]);
    let named: Vec<&str> = errors.iter().map(|e| e.variable).collect();
    assert_eq!(
        named,
        [
            "CODEXK8S_HTTP_ADDR",
            "CODEXK8S_PUBLIC_URL",
            "CODEXK8S_LOG_FORMAT",
            "CODEXK8S_LOG_FILTER",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "CODEXK8S_QUEUE_LEASE",
            "CODEXK8S_QUEUE_CONCURRENCY",
        ]
    );
    assert!(errors[2].problem.contains("`json` or `text`"));
}

#[test]
fn database_url_must_be_postgres_and_is_never_echoed() {
    let errors = errors_for(&[("CODEXK8S_DATABASE_URL", "mysql://root:topsecret@db/x")]);
    assert_eq!(errors[0].variable, "CODEXK8S_DATABASE_URL");
    assert!(errors[0].problem.contains("postgres://"));
    assert!(!errors[0].problem.contains("topsecret"));
}

#[test]
fn describe_masks_the_database_password() {
    let config = Config::from_env(&env(&[(
        "CODEXK8S_DATABASE_URL",
        "postgres://codex:hunter2@db:5432/codex?sslmode=require&password=alsosecret",
    )]))
    .unwrap();
    let printed: String = config
        .describe()
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(!printed.contains("alsosecret"), "{printed}");
    assert!(
        printed.contains("postgres://codex:****@db:5432/codex"),
        "{printed}"
    );
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn lease_shorter_than_a_second_is_refused() {
    let errors = errors_for(&[DB, ("CODEXK8S_QUEUE_LEASE", "200ms")]);
    assert_eq!(errors[0].variable, "CODEXK8S_QUEUE_LEASE");
}

#[test]
fn token_keys_are_validated_without_echo_and_printed_as_the_active_id_only() {
    // 32 bytes of 0x01, base64.
    let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let config =
        Config::from_env(&env(&[DB, ("CODEXK8S_TOKEN_KEYS", &format!("k2:{key}"))])).unwrap();
    let printed: Vec<String> = config
        .describe()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let line = printed
        .iter()
        .find(|l| l.starts_with("CODEXK8S_TOKEN_KEYS="))
        .unwrap();
    assert_eq!(line, "CODEXK8S_TOKEN_KEYS=(active key \"k2\", keys masked)");
    assert!(printed.iter().all(|l| !l.contains(key)));

    let errors = errors_for(&[DB, ("CODEXK8S_TOKEN_KEYS", "k1:c2VjcmV0LWJ1dC1zaG9ydA==")]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].variable, "CODEXK8S_TOKEN_KEYS");
    assert!(
        errors[0].problem.contains("32 bytes"),
        "{}",
        errors[0].problem
    );
    assert!(
        !errors[0].problem.contains("c2VjcmV0"),
        "the value is never echoed"
    );
}

#[test]
fn runtime_settings_default_and_names_are_checked() {
    let config = Config::from_env(&env(&[DB])).unwrap();
    assert_eq!(config.runtime.runs_namespace, "codex-k8s-runs");
    assert_eq!(config.runtime.slots_per_project, 2);
    assert_eq!(config.runtime.max_relaunches, 2);
    assert_eq!(config.runtime.pending_timeout, Duration::from_secs(600));
    assert_eq!(
        config.runtime.unschedulable_timeout,
        Duration::from_secs(300)
    );
    assert_eq!(config.github_api_url.to_string(), "https://api.github.com/");
    let errors = errors_for(&[DB, ("CODEXK8S_NAMESPACE_PREFIX", "Not_A_Label")]);
    assert_eq!(errors[0].variable, "CODEXK8S_NAMESPACE_PREFIX");
}
