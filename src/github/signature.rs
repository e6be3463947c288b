//! `X-Hub-Signature-256` verification: HMAC-SHA256 over the exact bytes
//! received, compared in constant time.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::events::SecretSlot;

type HmacSha256 = Hmac<Sha256>;

/// A webhook secret. Never printed: `Debug` shows only that it is set.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Rejects an empty secret: with one, anyone could sign deliveries.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        if value.is_empty() {
            Err("must not be empty")
        } else {
            Ok(WebhookSecret(value.as_bytes().to_vec()))
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
    }

    /// `sha256=<hex>` for `body`, as GitHub sends it.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// The secrets a delivery may be signed with: the current one and, during a
/// rotation, the previous one.
#[derive(Clone, Debug)]
pub struct WebhookSecrets {
    pub current: WebhookSecret,
    pub previous: Option<WebhookSecret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header (a `sha1=` header alone does not count).
    Missing,
    /// Not `sha256=` followed by 64 hex digits.
    Malformed,
    /// Well-formed, but no configured secret produced it.
    Mismatch,
}

/// The 32-byte digest of an `X-Hub-Signature-256` header value.
pub fn parse_header(header: &str) -> Result<[u8; 32], SignatureError> {
    let hex_digest = header.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| SignatureError::Malformed)?;
    Ok(digest)
}

impl WebhookSecrets {
    /// Which secret signed `body`, checked in constant time against each.
    pub fn verify(&self, header: Option<&str>, body: &[u8]) -> Result<SecretSlot, SignatureError> {
        let digest = parse_header(header.ok_or(SignatureError::Missing)?)?;
        let candidates = std::iter::once((SecretSlot::Current, &self.current))
            .chain(self.previous.iter().map(|s| (SecretSlot::Previous, s)));
        for (slot, secret) in candidates {
            let mut mac = secret.mac();
            mac.update(body);
            if mac.verify_slice(&digest).is_ok() {
                return Ok(slot);
            }
        }
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB_VECTOR: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn secrets(current: &str, previous: Option<&str>) -> WebhookSecrets {
        WebhookSecrets {
            current: WebhookSecret::parse(current).expect("non-empty"),
            previous: previous.map(|p| WebhookSecret::parse(p).expect("non-empty")),
        }
    }

    #[test]
    fn githubs_published_vector_verifies() {
        let s = secrets("It's a Secret to Everybody", None);
        assert_eq!(s.current.sign(b"Hello, World!"), GITHUB_VECTOR);
        assert_eq!(s.verify(Some(GITHUB_VECTOR), b"Hello, World!"), Ok(SecretSlot::Current));
        assert_eq!(s.verify(Some(GITHUB_VECTOR), b"Hello, World?"), Err(SignatureError::Mismatch));
    }

    #[test]
    fn the_previous_secret_is_accepted_and_named() {
        let s = secrets("new", Some("It's a Secret to Everybody"));
        assert_eq!(s.verify(Some(GITHUB_VECTOR), b"Hello, World!"), Ok(SecretSlot::Previous));
    }

    #[test]
    fn malformed_headers_are_told_apart_from_mismatches() {
        let s = secrets("x", None);
        assert_eq!(s.verify(None, b""), Err(SignatureError::Missing));
        assert_eq!(s.verify(Some("sha1=abcd"), b""), Err(SignatureError::Malformed));
        assert_eq!(s.verify(Some("sha256=zz"), b""), Err(SignatureError::Malformed));
        assert_eq!(s.verify(Some(&format!("sha256={}", "0".repeat(64))), b""), Err(SignatureError::Mismatch));
    }

    #[test]
    fn an_empty_secret_is_refused_and_never_printed() {
        assert!(WebhookSecret::parse("").is_err());
        let shown = format!("{:?}", secrets("hunter2", None));
        assert!(!shown.contains("hunter2"));
    }
}
