//! Sealed repository tokens and `codex-k8s keys rotate`, against a real database and the real binary.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use codex_k8s::config::Secret;
use codex_k8s::sealing::{KeyRing, SealError};
use codex_k8s::tokens::{self, TokenError, TokenKind};
use serde_json::json;
use support::TestDb;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_codex-k8s");

fn key(byte: u8) -> String {
    STANDARD.encode([byte; 32])
}

async fn repository(db: &TestDb, slug: &str, external_id: i64) -> Uuid {
    support::seed::project_with_repository(db, slug, json!({}), external_id, "acme", slug).await;
    sqlx::query_scalar(include_str!("support/sql/repository_id_by_external.sql"))
        .bind(external_id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn open(
    db: &TestDb,
    keys: &KeyRing,
    repo: Uuid,
    kind: TokenKind,
) -> Result<Option<String>, TokenError> {
    let mut conn = db.pool.acquire().await.unwrap();
    Ok(tokens::open(&mut conn, keys, repo, kind)
        .await?
        .map(|s| s.expose().clone()))
}

fn rotate(db: &TestDb, keys: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(BIN);
    command
        .args(["keys", "rotate"])
        .env_clear()
        .env("CODEXK8S_DATABASE_URL", &db.url);
    if let Some(keys) = keys {
        command.env("CODEXK8S_TOKEN_KEYS", keys);
    }
    command.output().unwrap()
}

#[tokio::test]
async fn rotation_reseals_every_token_and_a_moved_ciphertext_never_opens() {
    let db = TestDb::migrated().await;
    let (a, b) = (
        repository(&db, "alpha", 1).await,
        repository(&db, "beta", 2).await,
    );
    let old_keys = format!("k1:{}", key(1));
    let old: KeyRing = old_keys.parse().unwrap();
    let secrets = [
        "ghp_alpha_access_token_1234",
        "ghp_alpha_bot_token_5678",
        "ghp_beta_access_token_9012",
    ];
    {
        let mut conn = db.pool.acquire().await.unwrap();
        for (repo, kind, token) in [
            (a, TokenKind::Access, secrets[0]),
            (a, TokenKind::Bot, secrets[1]),
            (b, TokenKind::Access, secrets[2]),
        ] {
            tokens::store(&mut conn, &old, repo, kind, &Secret::new(token.to_owned()))
                .await
                .unwrap();
        }
    }
    assert_eq!(
        open(&db, &old, a, TokenKind::Bot).await.unwrap().as_deref(),
        Some(secrets[1])
    );
    assert_eq!(open(&db, &old, b, TokenKind::Bot).await.unwrap(), None);

    // A new key goes first; the old one stays so stored tokens still open.
    let both = format!("k2:{},{old_keys}", key(2));
    let rotating: KeyRing = both.parse().unwrap();
    assert_eq!(
        open(&db, &rotating, a, TokenKind::Access)
            .await
            .unwrap()
            .as_deref(),
        Some(secrets[0])
    );
    let output = rotate(&db, Some(&both));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(r#"resealed 3 token(s) with key "k2"; 0 could not be opened"#),
        "{stdout}"
    );
    for secret in secrets
        .iter()
        .copied()
        .chain([key(1).as_str(), key(2).as_str()])
    {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a token or key was printed"
        );
    }
    // Only the new key is needed now.
    let new_only: KeyRing = format!("k2:{}", key(2)).parse().unwrap();
    assert_eq!(
        open(&db, &new_only, a, TokenKind::Access)
            .await
            .unwrap()
            .as_deref(),
        Some(secrets[0])
    );
    assert_eq!(
        open(&db, &new_only, a, TokenKind::Bot)
            .await
            .unwrap()
            .as_deref(),
        Some(secrets[1])
    );
    assert_eq!(
        open(&db, &new_only, b, TokenKind::Access)
            .await
            .unwrap()
            .as_deref(),
        Some(secrets[2])
    );
    // A second rotation has nothing to do.
    let again = rotate(&db, Some(&both));
    assert!(String::from_utf8_lossy(&again.stdout).contains("resealed 0 token(s)"));

    // A ciphertext copied onto another row does not open there.
    sqlx::query(include_str!("support/sql/copy_access_token.sql"))
        .bind(a)
        .bind(b)
        .execute(&db.pool)
        .await
        .unwrap();
    match open(&db, &new_only, b, TokenKind::Access).await {
        Err(TokenError::Unsealable {
            source: SealError::Invalid,
            ..
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let audit: Vec<String> = sqlx::query_scalar(include_str!("support/sql/all_flow_payloads.sql"))
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "each rotation is audited");
    assert!(audit.iter().all(|p| secrets.iter().all(|s| !p.contains(s))));
}

#[tokio::test]
async fn rotation_reports_tokens_no_key_opens_and_fails() {
    let db = TestDb::migrated().await;
    let repo = repository(&db, "gamma", 3).await;
    let lost: KeyRing = format!("lost:{}", key(9)).parse().unwrap();
    {
        let mut conn = db.pool.acquire().await.unwrap();
        tokens::store(
            &mut conn,
            &lost,
            repo,
            TokenKind::Access,
            &Secret::new("ghp_gamma".into()),
        )
        .await
        .unwrap();
    }
    let output = rotate(&db, Some(&format!("k2:{}", key(2))));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("repository {repo}, Access token")) && stderr.contains("\"lost\""),
        "{stderr}"
    );
    assert!(!stderr.contains("ghp_gamma"));

    let unset = rotate(&db, None);
    assert_eq!(unset.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&unset.stderr).contains("CODEXK8S_TOKEN_KEYS is not set"));
}
