//! The few fields of a webhook payload that intake records, read without
//! building a JSON tree: unknown fields are skipped (but still validated).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::events::{RepositoryRef, SenderRef};

/// The top level of a payload. The recorded fields are kept as raw JSON and
/// read leniently: an unusual shape in one of them never rejects a delivery
/// that GitHub signed.
#[derive(Debug, Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow)]
    action: Option<&'a RawValue>,
    #[serde(borrow)]
    installation: Option<&'a RawValue>,
    #[serde(borrow)]
    repository: Option<&'a RawValue>,
    #[serde(borrow)]
    sender: Option<&'a RawValue>,
}

#[derive(Debug)]
pub struct PayloadEnvelope<'a> {
    pub action: Option<Cow<'a, str>>,
    pub installation: Option<Installation>,
    pub repository: Option<Repository<'a>>,
    pub sender: Option<Sender<'a>>,
}

fn lenient<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<T> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

#[derive(Debug, Deserialize)]
pub struct Installation {
    pub id: u64,
}

#[derive(Debug, Deserialize)]
pub struct Repository<'a> {
    pub id: u64,
    #[serde(borrow)]
    pub full_name: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
pub struct Sender<'a> {
    pub id: u64,
    #[serde(borrow)]
    pub login: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not valid UTF-8")]
    NotUtf8,
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
}

impl<'a> PayloadEnvelope<'a> {
    /// Parses and validates `body` as a JSON object.
    pub fn parse(body: &'a [u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(body).map_err(|_| PayloadError::NotUtf8)?;
        // serde would also accept an array for a struct; GitHub sends objects only.
        if !text.trim_start().starts_with('{') {
            return Err(PayloadError::NotAnObject);
        }
        let raw: RawEnvelope<'a> = serde_json::from_str(text).map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
        Ok(PayloadEnvelope {
            action: lenient(raw.action),
            installation: lenient(raw.installation),
            repository: lenient(raw.repository),
            sender: lenient(raw.sender),
        })
    }

    pub fn repository_ref(&self) -> Option<RepositoryRef> {
        self.repository.as_ref().map(|r| RepositoryRef { id: r.id, full_name: r.full_name.clone().into_owned() })
    }

    pub fn sender_ref(&self) -> Option<SenderRef> {
        self.sender.as_ref().map(|s| SenderRef {
            id: s.id,
            login: s.login.clone().into_owned(),
            kind: s.kind.as_deref().unwrap_or("User").to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_recorded_fields_and_skips_the_rest() {
        let body = br#"{"action":"created","issue":{"body":"a \"quoted\" word","n":[1,2]},
            "repository":{"id":7,"full_name":"o/r","private":false},
            "sender":{"id":3,"login":"octo\u0063at","type":"User"},"installation":{"id":9,"node_id":"x"}}"#;
        let envelope = PayloadEnvelope::parse(body).expect("valid payload");
        assert_eq!(envelope.action.as_deref(), Some("created"));
        assert_eq!(envelope.installation.as_ref().map(|i| i.id), Some(9));
        assert_eq!(envelope.repository_ref().map(|r| r.full_name), Some("o/r".to_owned()));
        assert_eq!(envelope.sender_ref().map(|s| s.login), Some("octocat".to_owned()));
    }

    #[test]
    fn rejects_what_is_not_a_json_object() {
        assert!(matches!(PayloadEnvelope::parse(b"[1]"), Err(PayloadError::NotAnObject)));
        assert!(matches!(PayloadEnvelope::parse(b"\"x\""), Err(PayloadError::NotAnObject)));
        assert!(matches!(PayloadEnvelope::parse(b"{\"a\":"), Err(PayloadError::InvalidJson(_))));
        assert!(matches!(PayloadEnvelope::parse(b"{\"a\":\"\xff\"}"), Err(PayloadError::NotUtf8)));
        assert!(matches!(PayloadEnvelope::parse(b"{} x"), Err(PayloadError::InvalidJson(_))));
    }

    #[test]
    fn an_odd_shape_in_a_recorded_field_is_ignored_not_rejected() {
        let envelope = PayloadEnvelope::parse(br#"{"action":3,"sender":{"login":"x"},"installation":{"id":5}}"#)
            .expect("a JSON object is accepted");
        assert!(envelope.action.is_none());
        assert!(envelope.sender.is_none());
        assert_eq!(envelope.installation.map(|i| i.id), Some(5));
    }
}
