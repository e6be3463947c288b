//! Reading what agent runtimes report: the V0 callback operations (its file
//! writes of `sessions/{conversation_id}/events/{n}.json`, one agent event
//! each) and the agent server's webhook events ([`record_agent_server_event`]).

use serde::Deserialize;

use crate::events::{
    derived_id, streams, AgentEventsReceived, AgentServerEventReceived, ConversationStatusChanged, DomainEvent,
};
use crate::runner::HandlerError;
use crate::store::{EventStore, ExpectedVersion};
use crate::triggers::TriggerState;

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

// ---- the OpenHands agent server (`AGENT_RUNTIME=openhands-agent-server`) ----

/// The `execution_status` values that end an agent-server run.
pub const AGENT_SERVER_TERMINAL_STATES: &[&str] = &["finished", "error", "stuck"];

/// The terminal `execution_status` an agent-server event reports, if any:
/// `{"kind":"ConversationStateUpdateEvent","key":"execution_status","value":…}`,
/// or a full state snapshot (`"key":"full_state"`) whose `execution_status` is one.
pub fn terminal_status(event: &serde_json::Value) -> Option<&str> {
    if event.get("kind")?.as_str()? != "ConversationStateUpdateEvent" {
        return None;
    }
    let value = event.get("value")?;
    let status = match event.get("key")?.as_str()? {
        "execution_status" => value.as_str()?,
        "full_state" => value.get("execution_status")?.as_str()?,
        _ => return None,
    };
    AGENT_SERVER_TERMINAL_STATES.contains(&status).then_some(status)
}

/// What a conversation's stored agent-server events say about its end.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AgentServerOutcome {
    /// The last `finish` action's `action.message`.
    pub finish_message: Option<String>,
    /// The last agent `MessageEvent`'s text.
    pub last_agent_message: Option<String>,
    /// The last `ConversationErrorEvent`'s `code: detail`.
    pub error: Option<String>,
}

impl AgentServerOutcome {
    /// Takes one agent-server event into account (in log order).
    pub fn observe(&mut self, event: &serde_json::Value) {
        fn text(v: Option<&serde_json::Value>) -> Option<&str> {
            v.and_then(|v| v.as_str()).map(str::trim).filter(|t| !t.is_empty())
        }
        match event.get("kind").and_then(|k| k.as_str()) {
            Some("ActionEvent") => {
                let action = event.get("action");
                let is_finish = event.get("tool_name").and_then(|t| t.as_str()) == Some("finish")
                    || action.and_then(|a| a.get("kind")).and_then(|k| k.as_str()) == Some("FinishAction");
                if is_finish {
                    if let Some(message) = text(action.and_then(|a| a.get("message"))) {
                        self.finish_message = Some(message.to_owned());
                    }
                }
            }
            Some("MessageEvent") if event.get("source").and_then(|s| s.as_str()) == Some("agent") => {
                let parts: Vec<&str> = event
                    .pointer("/llm_message/content")
                    .and_then(|c| c.as_array())
                    .map(|content| {
                        content
                            .iter()
                            .filter(|part| part.get("type").and_then(|t| t.as_str()) == Some("text"))
                            .filter_map(|part| text(part.get("text")))
                            .collect()
                    })
                    .unwrap_or_default();
                if !parts.is_empty() {
                    self.last_agent_message = Some(parts.join("\n"));
                }
            }
            Some("ConversationErrorEvent") => {
                let code = text(event.get("code")).unwrap_or("error");
                self.error = Some(match text(event.get("detail")) {
                    Some(detail) => format!("{code}: {detail}"),
                    None => code.to_owned(),
                });
            }
            _ => {}
        }
    }

    /// The result to post: the finish message, else the agent's last message.
    pub fn result(&self) -> Option<String> {
        self.finish_message.clone().or_else(|| self.last_agent_message.clone())
    }
}

/// What a conversation's stored agent-server events say so far (read a page at a time).
pub async fn agent_server_outcome(
    store: &dyn EventStore,
    conversation_id: &str,
) -> Result<AgentServerOutcome, HandlerError> {
    const PAGE: usize = 1000;
    let stream = streams::conversation(conversation_id);
    let mut outcome = AgentServerOutcome::default();
    let mut from = 0;
    loop {
        let page = store.read_stream(&stream, from, PAGE).await?;
        for recorded in &page {
            if let Ok(received) = AgentServerEventReceived::decode(recorded) {
                outcome.observe(&received.event);
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => from = last.version + 1,
            _ => return Ok(outcome),
        }
    }
}

/// Called by the process manager for each stored [`AgentServerEventReceived`]:
/// when the event ends a run that has not ended in the log yet (a terminal
/// `execution_status`; polling may have recorded the end first), appends
/// `ConversationStatusChanged` to the trigger's stream, with `last_message` =
/// the `finish` action's message, else the agent's last message, and, for
/// `error`/`stuck`, `reason` = the `ConversationErrorEvent`'s `code: detail`
/// (both from the conversation's events stored so far). The event id is
/// derived from (conversation, state), so a replay, a redelivered event or a
/// full-state snapshot saying the same records nothing twice.
pub async fn record_agent_server_event(
    store: &dyn EventStore,
    received: &AgentServerEventReceived,
) -> Result<(), HandlerError> {
    let Some(state) = terminal_status(&received.event) else { return Ok(()) };
    // Polling may have seen the end first: the run ends once in the log.
    let trigger_stream = streams::trigger(received.trigger_id);
    let history = store.read_stream(&trigger_stream, 0, usize::MAX).await?;
    let trigger = TriggerState::fold(&history).map_err(|e| HandlerError::Decode {
        event_type: e.event_type,
        position: e.position,
        source: e.source,
    })?;
    if trigger.ended.is_some() {
        return Ok(());
    }
    let outcome = agent_server_outcome(store, &received.conversation_id).await?;
    let reason = if state == "finished" { None } else { outcome.error.clone() };
    let changed = ConversationStatusChanged {
        trigger_id: received.trigger_id,
        conversation_id: received.conversation_id.clone(),
        agent_state: state.to_owned(),
        reason,
        last_message: outcome.result(),
    };
    let event_id = derived_id(&["agent-server-state", &received.conversation_id, state]);
    let event = changed.to_new_event(event_id, None)?;
    store.append(&trigger_stream, ExpectedVersion::StreamExists, vec![event]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn terminal_states_end_the_run() {
        let update = |key: &str, value: serde_json::Value| json!({"kind": "ConversationStateUpdateEvent", "id": "e", "key": key, "value": value});
        assert_eq!(terminal_status(&update("execution_status", json!("finished"))), Some("finished"));
        assert_eq!(terminal_status(&update("execution_status", json!("error"))), Some("error"));
        assert_eq!(terminal_status(&update("execution_status", json!("stuck"))), Some("stuck"));
        assert_eq!(terminal_status(&update("execution_status", json!("running"))), None);
        assert_eq!(terminal_status(&update("full_state", json!({"execution_status": "finished"}))), Some("finished"));
        assert_eq!(terminal_status(&update("full_state", json!({"execution_status": "idle"}))), None);
        assert_eq!(terminal_status(&json!({"kind": "MessageEvent", "key": "execution_status"})), None);
    }

    #[test]
    fn the_finish_message_wins_over_the_last_message() {
        let mut outcome = AgentServerOutcome::default();
        outcome.observe(&json!({"kind": "MessageEvent", "source": "user",
            "llm_message": {"role": "user", "content": [{"type": "text", "text": "please"}]}}));
        assert_eq!(outcome.result(), None);
        outcome.observe(&json!({"kind": "MessageEvent", "source": "agent",
            "llm_message": {"role": "assistant", "content": [{"type": "text", "text": "working on it"}]}}));
        assert_eq!(outcome.result().as_deref(), Some("working on it"));
        outcome.observe(&json!({"kind": "ActionEvent", "source": "agent", "tool_name": "finish",
            "action": {"kind": "FinishAction", "message": "Fixed in abc123"}}));
        outcome.observe(&json!({"kind": "MessageEvent", "source": "agent",
            "llm_message": {"role": "assistant", "content": [{"type": "text", "text": "later"}]}}));
        assert_eq!(outcome.result().as_deref(), Some("Fixed in abc123"));
        outcome.observe(&json!({"kind": "ConversationErrorEvent", "code": "LLMError", "detail": "no model"}));
        assert_eq!(outcome.error.as_deref(), Some("LLMError: no model"));
    }
}
