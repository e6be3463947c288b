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
