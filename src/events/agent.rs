//! What the agent runtime reports back, on stream `conversation-{id}`.

use serde::{Deserialize, Serialize};

use super::DomainEvent;

/// One operation of the runtime's batched file-store callback, as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentOperation {
    /// `POST` (write) or `DELETE`.
    pub method: String,
    /// `sessions/{conversation_id}/…`.
    pub path: String,
    /// UTF-8 text, or base64 when `encoding` is `base64`.
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// The operations of one callback batch that concern this conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEventsReceived {
    pub conversation_id: String,
    /// The trigger that started the conversation (resolved when the batch arrived).
    pub trigger_id: uuid::Uuid,
    pub operations: Vec<AgentOperation>,
}

impl DomainEvent for AgentEventsReceived {
    const TYPE: &'static str = "AgentEventsReceived";
    const SCHEMA_VERSION: u32 = 1;
}

/// One event the OpenHands agent server posted to
/// `POST /agent-server/events/{conversation_id}`, as it sent it.
///
/// One domain event per agent event, not per webhook batch: the agent server
/// re-batches what it resends (a failed post is requeued in front of newer
/// events and cut into batches again), so only the agent event's own `id`
/// identifies a delivery. The event id is derived from it (see
/// [`agent_server_event_id`]), so a redelivered event is stored once however
/// it is batched, and the process manager reacts to each event on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentServerEventReceived {
    /// The hyphenated UUID hookwise gave the conversation (the agent server
    /// posts it without dashes).
    pub conversation_id: String,
    /// The trigger that started the conversation (resolved when the event arrived).
    pub trigger_id: uuid::Uuid,
    /// The agent server's event, unchanged (`kind`, `id`, `timestamp`, `source`, …).
    pub event: serde_json::Value,
}

impl DomainEvent for AgentServerEventReceived {
    const TYPE: &'static str = "AgentServerEventReceived";
    const SCHEMA_VERSION: u32 = 1;
}

/// The log's event id of an agent-server event: derived from the
/// conversation and the agent event's `id` (or, for an event without one,
/// from its bytes), so redeliveries are the same event.
pub fn agent_server_event_id(conversation_id: &str, agent_event_id: &str) -> uuid::Uuid {
    super::derived_id(&["agent-server-event", conversation_id, agent_event_id])
}
