//! The wire format of a batch: a JSON array of events, its id and signature.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use uuid::Uuid;

use super::ForwardSecret;
use crate::events::DomainEvent;
use crate::events::{derived_id, WebhookReceived};
use crate::store::{Position, RecordedEvent};

#[derive(Serialize)]
struct WireEvent<'a> {
    position: u64,
    stream: &'a str,
    version: u64,
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    schema_version: u32,
    /// RFC 3339, UTC.
    recorded_at: String,
    data: &'a RawValue,
    /// The GitHub body of a `WebhookReceived`, as JSON (absent for other events).
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
}

/// One event as the JSON object a sink receives.
pub fn encode_event(event: &RecordedEvent) -> Vec<u8> {
    let data = std::str::from_utf8(&event.data).ok().and_then(|s| serde_json::from_str::<&RawValue>(s).ok());
    let null = RawValue::NULL;
    let data = data.unwrap_or_else(|| {
        tracing::warn!(position = event.position.0, "event data is not JSON; forwarded as null");
        null
    });
    // Intake only stores bodies that are JSON objects; anything else is left out.
    let payload = (event.event_type == WebhookReceived::TYPE)
        .then_some(event.payload.as_deref())
        .flatten()
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|s| serde_json::from_str::<&RawValue>(s).ok());
    let recorded_at = event
        .recorded_at()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| event.recorded_at_micros.to_string());
    let wire = WireEvent {
        position: event.position.0,
        stream: &event.stream,
        version: event.version,
        event_id: event.event_id,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        recorded_at,
        data,
        payload,
    };
    serde_json::to_vec(&wire).unwrap_or_else(|_| b"null".to_vec())
}

/// `X-Hookwise-Batch`: the same first and last position always give the same id.
pub fn batch_id(first: Position, last: Position) -> Uuid {
    derived_id(&["forward-batch", &first.0.to_string(), &last.0.to_string()])
}

/// `X-Hookwise-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the body.
pub fn sign_batch(secret: &ForwardSecret, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
        // HMAC takes keys of any length; this branch cannot run.
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A batch ready to send: once built, retries send exactly these bytes.
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: Uuid,
    pub body: Bytes,
    pub events: usize,
    /// The checkpoint to save once the sink took the batch: the last position
    /// this batch accounts for (filtered-out events included).
    pub through: Position,
}

/// Events gathered for the next batch.
#[derive(Debug, Default)]
pub struct PendingBatch {
    body: BytesMut,
    first: Option<Position>,
    last: Position,
    events: usize,
    oldest: Option<Instant>,
}

impl PendingBatch {
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The body's size once closed with `]`.
    pub fn bytes(&self) -> usize {
        self.body.len() + 1
    }

    /// Whether `encoded` would push a non-empty batch past `max_bytes`.
    pub fn would_overflow(&self, encoded: &[u8], max_bytes: usize) -> bool {
        !self.is_empty() && self.bytes() + 1 + encoded.len() > max_bytes
    }

    /// When the oldest pending event entered the batch.
    pub fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    pub fn push(&mut self, position: Position, encoded: &[u8]) {
        if self.is_empty() {
            self.body.put_u8(b'[');
            self.first = Some(position);
            self.oldest = Some(Instant::now());
        } else {
            self.body.put_u8(b',');
        }
        self.body.extend_from_slice(encoded);
        self.last = position;
        self.events += 1;
    }

    /// Closes the batch; `through` is the last position seen (at least the last included).
    pub fn take(&mut self, through: Position) -> Option<Batch> {
        let first = self.first?;
        let mut body = std::mem::take(&mut self.body);
        body.put_u8(b']');
        let batch = Batch {
            id: batch_id(first, self.last),
            body: body.freeze(),
            events: self.events,
            through: through.max(self.last),
        };
        *self = PendingBatch::default();
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: u64, event_type: &str, data: &str, payload: Option<&str>) -> RecordedEvent {
        RecordedEvent {
            position: Position(position),
            stream: "s".into(),
            version: 0,
            event_id: Uuid::nil(),
            event_type: event_type.into(),
            schema_version: 1,
            data: data.as_bytes().to_vec(),
            payload: payload.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            recorded_at_micros: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn a_batch_is_a_json_array_with_payloads_inline() {
        let mut pending = PendingBatch::default();
        pending.push(Position(3), &encode_event(&event(3, "WebhookReceived", r#"{"a":1}"#, Some(r#"{"x":[1]}"#))));
        pending.push(Position(4), &encode_event(&event(4, "Other", r#"{"b":2}"#, Some("not json"))));
        let batch = pending.take(Position(9)).unwrap();
        assert!(pending.is_empty());
        assert_eq!(batch.through, Position(9));
        assert_eq!(batch.id, batch_id(Position(3), Position(4)));
        let parsed: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(parsed[0]["position"], 3);
        assert_eq!(parsed[0]["type"], "WebhookReceived");
        assert_eq!(parsed[0]["data"]["a"], 1);
        assert_eq!(parsed[0]["payload"]["x"][0], 1);
        assert_eq!(parsed[0]["recorded_at"], "2023-11-14T22:13:20Z");
        assert!(parsed[1].get("payload").is_none());
        assert_eq!(parsed.as_array().unwrap().len(), 2);
    }

    #[test]
    fn size_accounting_matches_the_body() {
        let mut pending = PendingBatch::default();
        let encoded = encode_event(&event(1, "T", "{}", None));
        assert!(!pending.would_overflow(&encoded, 1));
        pending.push(Position(1), &encoded);
        let limit = pending.bytes() + 1 + encoded.len();
        assert!(!pending.would_overflow(&encoded, limit));
        assert!(pending.would_overflow(&encoded, limit - 1));
        pending.push(Position(2), &encoded);
        let size = pending.bytes();
        assert_eq!(pending.take(Position(2)).unwrap().body.len(), size);
    }

    #[test]
    fn batch_ids_depend_on_both_ends() {
        assert_eq!(batch_id(Position(1), Position(5)), batch_id(Position(1), Position(5)));
        assert_ne!(batch_id(Position(1), Position(5)), batch_id(Position(1), Position(6)));
        assert_ne!(batch_id(Position(1), Position(5)), batch_id(Position(2), Position(5)));
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let secret = ForwardSecret(b"Jefe".to_vec());
        assert_eq!(
            sign_batch(&secret, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
