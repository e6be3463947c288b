//! Records the events the OpenHands agent server posts for one conversation
//! (`POST /agent-server/events/{conversation_id}`): each agent event is
//! appended to `conversation-{id}` as an [`AgentServerEventReceived`] before
//! the agent server gets its 2xx, with an event id derived from the agent
//! event's `id`, so an event delivered twice (the agent server retries, and
//! re-batches what it retries) is stored once. Events of conversations
//! hookwise did not start are ignored and counted.

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::events::{agent_server_event_id, streams, AgentServerEventReceived, DomainEvent};
use crate::sql::{SqlDb, SqlError};
use crate::sql_params;
use crate::store::{EventStore, ExpectedVersion, StoreError};

/// Events one batch may carry, each stored as an event of its own. The agent
/// server posts at most `event_buffer_size` events at a time (5 by default,
/// `OH_WEBHOOKS_0_EVENT_BUFFER_SIZE`) and holds at most `max_queue_size`
/// (1,000 by default) waiting; a larger batch is refused whole.
pub const MAX_AGENT_SERVER_BATCH_EVENTS: usize = 1_000;

/// Events appended together: bounds one transaction and the decoded copies
/// held at a time (the raw batch itself is bounded by the route's body limit).
const APPEND_CHUNK: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AgentServerReceipt {
    /// Events stored now.
    pub accepted: usize,
    /// Events already stored by an earlier delivery.
    pub duplicates: usize,
    /// Events of a conversation hookwise did not start.
    pub ignored: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentServerEventsError {
    #[error("event {index}: {problem}")]
    Invalid { index: usize, problem: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sql(#[from] SqlError),
}

/// The agent server's id of a conversation (32 hex digits, or a hyphenated
/// UUID) as hookwise writes it: the hyphenated UUID it chose at the start.
pub fn normalize_conversation_id(raw: &str) -> Option<String> {
    if raw.len() > 36 {
        return None;
    }
    Uuid::try_parse(raw).ok().map(|id| id.hyphenated().to_string())
}

/// The trigger a conversation belongs to, from the process manager's
/// `agent_conversations` (filled from `ConversationStarted`).
pub async fn trigger_of(db: &SqlDb, conversation_id: &str) -> Result<Option<Uuid>, SqlError> {
    let rows = db
        .query("SELECT trigger_id FROM agent_conversations WHERE conversation_id = ?", sql_params![conversation_id])
        .await?;
    Ok(rows.first().and_then(|r| r.get::<String>(0).ok()).and_then(|t| Uuid::parse_str(&t).ok()))
}

/// What identifies an agent event: its `id` (an object's, when it has one).
#[derive(Deserialize)]
struct EventHead {
    #[serde(default)]
    id: Option<serde_json::Value>,
}

fn agent_event_key(raw: &RawValue) -> Result<String, String> {
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return Err("expected a JSON object".into());
    }
    let head: EventHead = serde_json::from_str(text).map_err(|e| e.to_string())?;
    match head.id {
        Some(serde_json::Value::String(id)) if !id.is_empty() && id.len() <= 200 => Ok(format!("id:{id}")),
        // No usable id: the same bytes are the same event.
        _ => Ok(format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))),
    }
}

pub async fn receive_agent_server_events(
    store: &dyn EventStore,
    db: &SqlDb,
    raw_conversation_id: &str,
    events: Vec<Box<RawValue>>,
) -> Result<AgentServerReceipt, AgentServerEventsError> {
    // Validate the whole batch before anything is stored.
    let mut keys = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        keys.push(agent_event_key(event).map_err(|problem| AgentServerEventsError::Invalid { index, problem })?);
    }
    let trigger = match normalize_conversation_id(raw_conversation_id) {
        Some(id) => trigger_of(db, &id).await?.map(|trigger_id| (id, trigger_id)),
        None => None,
    };
    let Some((conversation_id, trigger_id)) = trigger else {
        return Ok(AgentServerReceipt { accepted: 0, duplicates: 0, ignored: events.len() });
    };
    let stream = streams::conversation(&conversation_id);
    let mut receipt = AgentServerReceipt { accepted: 0, duplicates: 0, ignored: 0 };
    for (chunk, chunk_keys) in events.chunks(APPEND_CHUNK).zip(keys.chunks(APPEND_CHUNK)) {
        let mut new_events = Vec::with_capacity(chunk.len());
        for (raw, key) in chunk.iter().zip(chunk_keys) {
            let event: serde_json::Value = serde_json::from_str(raw.get()).map_err(StoreError::Encode)?;
            let received = AgentServerEventReceived { conversation_id: conversation_id.clone(), trigger_id, event };
            let event_id = agent_server_event_id(&conversation_id, key);
            new_events.push(received.to_new_event(event_id, None).map_err(StoreError::Encode)?);
        }
        let count = new_events.len();
        match store.append(&stream, ExpectedVersion::Any, new_events.clone()).await {
            Ok(result) if result.already_stored => receipt.duplicates += count,
            Ok(_) => receipt.accepted += count,
            // Some of these were stored by an earlier delivery (batched
            // differently), or an event appears twice in this batch: one at a time.
            Err(StoreError::DuplicateEventId { .. }) => {
                for event in new_events {
                    match store.append(&stream, ExpectedVersion::Any, vec![event]).await {
                        Ok(result) if result.already_stored => receipt.duplicates += 1,
                        Ok(_) => receipt.accepted += 1,
                        Err(StoreError::DuplicateEventId { .. }) => receipt.duplicates += 1,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_are_hyphenated() {
        let id = "0b8d6a9c-3f7e-4a55-9c1e-2d4f6a8b0c1e";
        assert_eq!(normalize_conversation_id("0b8d6a9c3f7e4a559c1e2d4f6a8b0c1e").as_deref(), Some(id));
        assert_eq!(normalize_conversation_id(id).as_deref(), Some(id));
        assert_eq!(normalize_conversation_id("not-a-uuid"), None);
        assert_eq!(normalize_conversation_id(&"a".repeat(100)), None);
    }

    #[test]
    fn events_are_keyed_by_their_id() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).expect("raw json");
        assert_eq!(agent_event_key(&raw(r#"{"id":"e1","kind":"MessageEvent"}"#)).ok().as_deref(), Some("id:e1"));
        let no_id = agent_event_key(&raw(r#"{"kind":"X"}"#)).unwrap_or_default();
        assert!(no_id.starts_with("sha256:"));
        assert!(agent_event_key(&raw("[1]")).is_err());
        assert!(agent_event_key(&raw("3")).is_err());
    }
}
