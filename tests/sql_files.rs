//! Every query file is well-formed: the `-- name: <model>__<operation> :one|:many|:exec` header
//! matches its path, and the statement prepares against the migrated schema.

mod support;

use std::path::{Path, PathBuf};

use sqlx::{Executor, SqlSafeStr};
use support::TestDb;

fn sql_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sql_files(&path));
        } else if path.extension().is_some_and(|e| e == "sql") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn check_header(path: &Path, expected_name: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("-- name: ")
        .unwrap_or_else(|| panic!("{}: first line must be `-- name: …`", path.display()));
    let (name, kind) = rest
        .split_once(' ')
        .unwrap_or_else(|| panic!("{}: header lacks the result kind", path.display()));
    assert_eq!(
        name,
        expected_name,
        "{}: name must match the path",
        path.display()
    );
    assert!(
        [":one", ":many", ":exec"].contains(&kind),
        "{}: unknown result kind {kind}",
        path.display()
    );
    text
}

#[tokio::test]
async fn every_product_query_is_named_after_its_path_and_prepares() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql");
    let db = TestDb::migrated().await;
    let files = sql_files(&root);
    assert!(files.len() >= 10, "found only {files:?}");
    let mut conn = db.pool.acquire().await.unwrap();
    for path in files {
        let model = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let operation = path.file_stem().unwrap().to_str().unwrap();
        let text = check_header(&path, &format!("{model}__{operation}"));
        // The files are this repository's own, read from disk: safe to send as they are.
        if let Err(e) = conn.prepare(sqlx::AssertSqlSafe(text).into_sql_str()).await {
            panic!("{} does not prepare: {e}", path.display());
        }
    }
}

#[test]
fn every_test_query_is_named_too() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/sql");
    for path in sql_files(&root) {
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("-- name: test_"),
            "{}: first line must be `-- name: test_…`",
            path.display()
        );
    }
}
