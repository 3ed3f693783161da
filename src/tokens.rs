//! Repository tokens at rest (SPEC §9): sealed into `repositories` with [`crate::sealing`], opened
//! only where a run or a provider call needs them, and re-sealed with the active key by
//! `codex-k8s keys rotate`. Nothing here ever logs or returns a token other than to its caller.

use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::config::Secret;
use crate::domain::errors::RepositoryError;
use crate::sealing::{KeyRing, RowBinding, SealError, Sealed};
use crate::sql;
use crate::store::audit::{self, Actor, FlowEvent};
use crate::store::map_sqlx_error;

/// Which token of a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The token codex-k8s uses for the provider's API (webhooks, labels, comments, PRs).
    Access,
    /// The token runs push and comment with (the bot account).
    Bot,
}

impl TokenKind {
    fn binding(self, repository: Uuid) -> RowBinding {
        RowBinding {
            table: "repositories",
            column: match self {
                Self::Access => "access_token",
                Self::Bot => "bot_token",
            },
            row_id: repository,
        }
    }
}

#[derive(sqlx::FromRow)]
struct SealedRow {
    id: Uuid,
    access_token_ciphertext: Option<Vec<u8>>,
    access_token_key_id: Option<String>,
    bot_token_ciphertext: Option<Vec<u8>>,
    bot_token_key_id: Option<String>,
}

impl SealedRow {
    fn sealed(&self, kind: TokenKind) -> Option<Sealed> {
        let (bytes, key_id) = match kind {
            TokenKind::Access => (&self.access_token_ciphertext, &self.access_token_key_id),
            TokenKind::Bot => (&self.bot_token_ciphertext, &self.bot_token_key_id),
        };
        Some(Sealed {
            key_id: key_id.clone()?,
            bytes: bytes.clone()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] RepositoryError),
    #[error("the {kind:?} token of repository {repository} cannot be opened: {source}")]
    Unsealable {
        repository: Uuid,
        kind: TokenKind,
        source: SealError,
    },
}

/// Seals `token` for `repository`'s `kind` column and stores it.
pub async fn store(
    conn: &mut PgConnection,
    keys: &KeyRing,
    repository: Uuid,
    kind: TokenKind,
    token: &Secret<String>,
) -> Result<(), RepositoryError> {
    let sealed = keys.seal(token.expose().as_bytes(), &kind.binding(repository));
    let (access, bot) = match kind {
        TokenKind::Access => (Some(sealed), None),
        TokenKind::Bot => (None, Some(sealed)),
    };
    write(conn, repository, access.as_ref(), bot.as_ref()).await
}

async fn write(
    conn: &mut PgConnection,
    repository: Uuid,
    access: Option<&Sealed>,
    bot: Option<&Sealed>,
) -> Result<(), RepositoryError> {
    sqlx::query(sql!("repositories/set_tokens"))
        .bind(repository)
        .bind(access.map(|s| &s.bytes))
        .bind(access.map(|s| &s.key_id))
        .bind(bot.map(|s| &s.bytes))
        .bind(bot.map(|s| &s.key_id))
        .execute(conn)
        .await
        .map_err(map_sqlx_error)?;
    Ok(())
}

/// Opens `repository`'s `kind` token; `None` when none is stored.
pub async fn open(
    conn: &mut PgConnection,
    keys: &KeyRing,
    repository: Uuid,
    kind: TokenKind,
) -> Result<Option<Secret<String>>, TokenError> {
    let row: Option<SealedRow> = sqlx::query_as(sql!("repositories/sealed_tokens"))
        .bind(repository)
        .fetch_optional(conn)
        .await
        .map_err(map_sqlx_error)?;
    let Some(sealed) = row.as_ref().and_then(|r| r.sealed(kind)) else {
        return Ok(None);
    };
    let unsealable = |source| TokenError::Unsealable {
        repository,
        kind,
        source,
    };
    let plain = keys
        .open(&sealed, &kind.binding(repository))
        .map_err(unsealable)?;
    let text = String::from_utf8(plain).map_err(|_| unsealable(SealError::Invalid))?;
    Ok(Some(Secret::new(text)))
}

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub resealed: usize,
    /// (repository, token) pairs that did not open and were left as they were.
    pub failed: Vec<(Uuid, TokenKind, SealError)>,
}

/// Re-seals every stored token not sealed with the active key, in batches, each in a transaction.
pub async fn rotate(pool: &PgPool, keys: &KeyRing) -> Result<Rotation, RepositoryError> {
    const BATCH: i64 = 100;
    let mut report = Rotation::default();
    let mut after = Uuid::nil();
    loop {
        let mut tx = pool.begin().await.map_err(map_sqlx_error)?;
        let rows: Vec<SealedRow> = sqlx::query_as(sql!("repositories/tokens_to_reseal"))
            .bind(keys.active_id())
            .bind(after)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_sqlx_error)?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.id;
        for row in &rows {
            let mut resealed = [None, None];
            for (slot, kind) in [TokenKind::Access, TokenKind::Bot].into_iter().enumerate() {
                let Some(sealed) = row.sealed(kind) else {
                    continue;
                };
                match keys.reseal(&sealed, &kind.binding(row.id)) {
                    Ok(new) => resealed[slot] = new,
                    Err(e) => report.failed.push((row.id, kind, e)),
                }
            }
            let count = resealed.iter().flatten().count();
            if count > 0 {
                write(&mut tx, row.id, resealed[0].as_ref(), resealed[1].as_ref()).await?;
                report.resealed += count;
            }
        }
        tx.commit().await.map_err(map_sqlx_error)?;
    }
    let mut tx = pool.begin().await.map_err(map_sqlx_error)?;
    audit::append(
        &mut tx,
        FlowEvent {
            correlation_id: &format!("keys-rotate:{}", Uuid::now_v7()),
            run_id: None,
            actor: Actor::System,
            event_type: "keys.rotated",
            payload: json!({
                "active_key": keys.active_id(),
                "resealed": report.resealed,
                "failed": report.failed.iter().map(|(id, kind, e)| json!({ "repository": id, "token": format!("{kind:?}"), "error": e.to_string() })).collect::<Vec<_>>(),
            }),
        },
    )
    .await?;
    tx.commit().await.map_err(map_sqlx_error)?;
    Ok(report)
}
