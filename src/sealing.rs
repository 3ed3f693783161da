//! Sealed tokens (SPEC §9): XChaCha20-Poly1305 with a named key, so keys can rotate, and the row's
//! identity as associated data, so a ciphertext copied onto another row does not open.
//!
//! `CODEXK8S_TOKEN_KEYS="kid1:<base64 of 32 bytes>,kid2:…"`: the first key seals, all of them open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

/// A token as stored: the id of the key that sealed it, and nonce ‖ ciphertext ‖ tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({}, {} bytes)", self.key_id, self.bytes.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the token was sealed with key {0:?}, which CODEXK8S_TOKEN_KEYS no longer holds")]
    UnknownKey(String),
    #[error("the sealed token does not open: wrong key, wrong row, or damaged")]
    Invalid,
}

/// The keys tokens are sealed with. Never printed: its `Debug` shows key ids only.
#[derive(Clone)]
pub struct KeyRing {
    /// Seals with the first; opens with any.
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(
            f,
            "KeyRing(active {:?}, ids {ids:?})",
            ids.first().unwrap_or(&"")
        )
    }
}

impl std::str::FromStr for KeyRing {
    type Err = String;

    /// `kid:<base64 32 bytes>[,kid:…]`; key ids are `[A-Za-z0-9_.-]{1,64}` and unique.
    fn from_str(spec: &str) -> Result<Self, String> {
        let mut keys: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        for (i, entry) in spec.split(',').map(str::trim).enumerate() {
            let n = i + 1;
            let (id, encoded) = entry
                .split_once(':')
                .ok_or_else(|| format!("key {n}: expected <key id>:<base64 of 32 bytes>"))?;
            let valid_id = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !valid_id {
                return Err(format!(
                    "key {n}: the key id must be 1-64 of A-Z a-z 0-9 _ . -"
                ));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(format!("key {n}: the key id {id:?} appears twice"));
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| format!("key {id:?}: not valid base64"))?;
            let key = Key::try_from(bytes.as_slice()).map_err(|_| {
                format!("key {id:?}: must be exactly 32 bytes, got {}", bytes.len())
            })?;
            keys.push((id.to_owned(), XChaCha20Poly1305::new(&key)));
        }
        if keys.is_empty() {
            return Err("expected at least one key".into());
        }
        Ok(Self { keys })
    }
}

impl KeyRing {
    /// The id of the key new tokens are sealed with.
    pub fn active_id(&self) -> &str {
        &self.keys[0].0
    }

    pub fn seal(&self, plaintext: &[u8], row: &RowBinding) -> Sealed {
        let (id, cipher) = &self.keys[0];
        let nonce = XNonce::generate();
        let aad = row.associated_data();
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: id.clone(),
            bytes,
        }
    }

    pub fn open(&self, sealed: &Sealed, row: &RowBinding) -> Result<Vec<u8>, SealError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .ok_or_else(|| SealError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.bytes.len() < NONCE_LEN {
            return Err(SealError::Invalid);
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Invalid)?;
        let aad = row.associated_data();
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Invalid)
    }

    /// Opens `sealed` and seals it again with the active key (for rotation); `None` when it
    /// already uses the active key.
    pub fn reseal(&self, sealed: &Sealed, row: &RowBinding) -> Result<Option<Sealed>, SealError> {
        if sealed.key_id == self.active_id() {
            return Ok(None);
        }
        let plaintext = self.open(sealed, row)?;
        Ok(Some(self.seal(&plaintext, row)))
    }
}

/// Where a sealed value lives: table, column and row id. Bound into the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowBinding {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: uuid::Uuid,
}

impl RowBinding {
    fn associated_data(&self) -> Vec<u8> {
        format!("codex-k8s:{}.{}:{}", self.table, self.column, self.row_id).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    fn row(id: u128) -> RowBinding {
        RowBinding {
            table: "repositories",
            column: "access_token",
            row_id: uuid::Uuid::from_u128(id),
        }
    }

    #[test]
    fn sealed_tokens_open_only_on_their_row_with_a_known_key() {
        let ring: KeyRing = format!("new:{},old:{}", key(2), key(1)).parse().unwrap();
        let sealed = ring.seal(b"ghp_secret", &row(1));
        assert_eq!(sealed.key_id, "new");
        assert!(!sealed.bytes.windows(10).any(|w| w == b"ghp_secret"));
        assert_eq!(ring.open(&sealed, &row(1)).unwrap(), b"ghp_secret");
        assert_eq!(ring.open(&sealed, &row(2)), Err(SealError::Invalid));
        let other_column = RowBinding {
            column: "bot_token",
            ..row(1)
        };
        assert_eq!(ring.open(&sealed, &other_column), Err(SealError::Invalid));
        let mut damaged = sealed.clone();
        *damaged.bytes.last_mut().unwrap() ^= 1;
        assert_eq!(ring.open(&damaged, &row(1)), Err(SealError::Invalid));
        assert_ne!(
            ring.seal(b"ghp_secret", &row(1)).bytes,
            sealed.bytes,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_readable_and_reseals_them() {
        let old: KeyRing = format!("old:{}", key(1)).parse().unwrap();
        let sealed = old.seal(b"token", &row(1));
        let rotated: KeyRing = format!("new:{},old:{}", key(2), key(1)).parse().unwrap();
        assert_eq!(rotated.open(&sealed, &row(1)).unwrap(), b"token");
        let resealed = rotated.reseal(&sealed, &row(1)).unwrap().unwrap();
        assert_eq!(resealed.key_id, "new");
        assert_eq!(rotated.reseal(&resealed, &row(1)).unwrap(), None);
        let only_new: KeyRing = format!("new:{}", key(2)).parse().unwrap();
        assert_eq!(only_new.open(&resealed, &row(1)).unwrap(), b"token");
        assert_eq!(
            only_new.open(&sealed, &row(1)),
            Err(SealError::UnknownKey("old".into()))
        );
    }

    #[test]
    fn key_specs_are_checked_and_never_printed() {
        for (spec, problem) in [
            ("", "key id"),
            ("k1", "expected <key id>"),
            ("k1:not base64!", "base64"),
            (&format!("k1:{}", STANDARD.encode([0u8; 16])), "32 bytes"),
            (&format!("k1:{},k1:{}", key(1), key(2)), "twice"),
            (&format!("bad id:{}", key(1)), "key id"),
        ] {
            let err = spec.parse::<KeyRing>().unwrap_err();
            assert!(err.contains(problem), "{spec:?}: {err}");
        }
        let ring: KeyRing = format!("k1:{}", key(7)).parse().unwrap();
        let printed = format!("{ring:?}");
        assert!(
            printed.contains("k1") && !printed.contains(&key(7)),
            "{printed}"
        );
    }
}
