//! `X-Hub-Signature-256` checking: HMAC-SHA256 of the exact body bytes, compared in constant time,
//! against every configured secret (several are valid at once while a secret is rotated).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Hub-Signature-256 must look like sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body for any configured secret")]
    Mismatch,
}

/// The header value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `header` (`sha256=<hex>`) against `body` for each secret.
pub fn verify(secrets: &[Secret<String>], header: &str, body: &[u8]) -> Result<(), SignatureError> {
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let matches = secrets.iter().any(|secret| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> Vec<Secret<String>> {
        list.iter().map(|s| Secret::new(s.to_string())).collect()
    }

    #[test]
    fn matches_githubs_documented_example() {
        // The example from GitHub's "Validating webhook deliveries" documentation.
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn any_configured_secret_may_match() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let header = sign("new", body);
        assert_eq!(verify(&secrets(&["old", "new"]), &header, body), Ok(()));
        assert_eq!(
            verify(&secrets(&["old"]), &header, body),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn other_bytes_and_malformed_headers_are_refused() {
        let header = sign("s", b"abc");
        assert_eq!(
            verify(&secrets(&["s"]), &header, b"abd"),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "sha1=abc",
            "sha256=zz",
            "sha256=abcd",
            &header[..header.len() - 2],
        ] {
            assert_eq!(
                verify(&secrets(&["s"]), bad, b"abc"),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }
}
