//! Reading the agent runtime's callback operations: its file writes of
//! `sessions/{conversation_id}/events/{n}.json`, one agent event each.

use serde::Deserialize;

use crate::events::{derived_id, streams, AgentEventsReceived, ConversationStatusChanged, DomainEvent};
use crate::runner::HandlerError;
use crate::store::{EventStore, ExpectedVersion};

#[derive(Deserialize)]
struct AgentEvent {
    source: Option<String>,
    action: Option<String>,
    observation: Option<String>,
    #[serde(default)]
    args: serde_json::Value,
    #[serde(default)]
    extras: serde_json::Value,
}

/// What one operation says, if it is an agent event that matters here.
pub enum Reported {
    /// The agent said something (a `message` or its `finish` thought).
    Message(String),
    /// The agent's state changed.
    State { state: String, reason: Option<String> },
}

/// Reads one operation's content (UTF-8 JSON; other encodings are not agent events).
pub fn read_operation(method: &str, path: &str, content: Option<&str>, encoding: Option<&str>) -> Option<Reported> {
    if method != "POST" || encoding.is_some() || !path.contains("/events/") || !path.ends_with(".json") {
        return None;
    }
    let event: AgentEvent = serde_json::from_str(content?).ok()?;
    if event.observation.as_deref() == Some("agent_state_changed") {
        let state = event.extras.get("agent_state")?.as_str()?.to_ascii_lowercase();
        let reason = event.extras.get("reason").and_then(|r| r.as_str()).filter(|r| !r.is_empty()).map(str::to_owned);
        return Some(Reported::State { state, reason });
    }
    if event.source.as_deref() != Some("agent") {
        return None;
    }
    let text = match event.action.as_deref()? {
        "message" => event.args.get("content")?.as_str()?,
        "finish" => event.args.get("final_thought")?.as_str()?,
        _ => return None,
    };
    (!text.trim().is_empty()).then(|| Reported::Message(text.to_owned()))
}

/// Appends a `ConversationStatusChanged` to the trigger's stream for each
/// state change in the batch (ids derived from the operation's path, so a
/// replay or a resent batch records nothing twice).
pub async fn record_state_changes(store: &dyn EventStore, received: &AgentEventsReceived) -> Result<(), HandlerError> {
    let mut last_message = None;
    for operation in &received.operations {
        let reported = read_operation(
            &operation.method,
            &operation.path,
            operation.content.as_deref(),
            operation.encoding.as_deref(),
        );
        match reported {
            Some(Reported::Message(text)) => last_message = Some(text),
            Some(Reported::State { state, reason }) => {
                let changed = ConversationStatusChanged {
                    trigger_id: received.trigger_id,
                    conversation_id: received.conversation_id.clone(),
                    agent_state: state,
                    reason,
                    last_message: last_message.clone(),
                };
                let event_id = derived_id(&["agent-state", &received.conversation_id, &operation.path]);
                let event = changed.to_new_event(event_id, None)?;
                store
                    .append(&streams::trigger(received.trigger_id), ExpectedVersion::StreamExists, vec![event])
                    .await?;
            }
            None => {}
        }
    }
    Ok(())
}

/// The agent's last message in a conversation's whole history.
pub async fn last_agent_message(store: &dyn EventStore, conversation_id: &str) -> Result<Option<String>, HandlerError> {
    let events = store.read_stream(&streams::conversation(conversation_id), 0, usize::MAX).await?;
    let mut last = None;
    for event in &events {
        let Ok(received) = AgentEventsReceived::decode(event) else { continue };
        for operation in &received.operations {
            let reported = read_operation(
                &operation.method,
                &operation.path,
                operation.content.as_deref(),
                operation.encoding.as_deref(),
            );
            if let Some(Reported::Message(text)) = reported {
                last = Some(text);
            }
        }
    }
    Ok(last)
}
