//! What agent runtimes report, recorded on the trigger: the V0 callback
//! operations ([`record_state_changes`]) and the agent server's webhook events
//! ([`record_agent_server_event`]), both read by `crate::agent`'s parsers.

use crate::agent::agent_server_events::{execution_status, AgentServerOutcome};
use crate::agent::v0_callbacks::{read_operation, Reported};
use crate::events::{
    derived_id, streams, AgentEventsReceived, AgentServerEventReceived, ConversationStatusChanged, DomainEvent,
};
use crate::runner::HandlerError;
use crate::store::{EventStore, ExpectedVersion};
use crate::triggers::{AgentOutcome, TriggerState};

/// Appends a `ConversationStatusChanged` to the trigger's stream for each
/// state change in the batch (ids derived from the operation's path, so a
/// replay or a resent batch records nothing twice). The agent's messages are
/// not copied into them: they stay where they are stored once, in the
/// conversation's stream, and the summary reads them from there
/// ([`last_agent_message`]). Copying the last message into every state change
/// made one 1 MiB batch with 100 state changes grow the log by 100 MiB.
pub async fn record_state_changes(store: &dyn EventStore, received: &AgentEventsReceived) -> Result<(), HandlerError> {
    for operation in &received.operations {
        let reported = read_operation(
            &operation.method,
            &operation.path,
            operation.content.as_deref(),
            operation.encoding.as_deref(),
        );
        if let Some(Reported::State { state, reason }) = reported {
            let changed = ConversationStatusChanged::new(
                received.trigger_id,
                received.conversation_id.clone(),
                state,
                reason,
                None,
            );
            let event_id = derived_id(&["agent-state", &received.conversation_id, &operation.path]);
            let event = changed.to_new_event(event_id, None)?;
            store.append(&streams::trigger(received.trigger_id), ExpectedVersion::StreamExists, vec![event]).await?;
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
/// the `finish` action's message, else the agent's last message (capped), and, for
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
    let changed = ConversationStatusChanged::new(
        received.trigger_id,
        received.conversation_id.clone(),
        state.to_owned(),
        reason,
        outcome.result(),
    );
    let event_id = derived_id(&["agent-server-state", &received.conversation_id, state]);
    let event = changed.to_new_event(event_id, None)?;
    store.append(&trigger_stream, ExpectedVersion::StreamExists, vec![event]).await?;
    Ok(())
}

/// The `execution_status` an agent-server event reports, when it ends the run.
fn terminal_status(event: &serde_json::Value) -> Option<&str> {
    execution_status(event).filter(|status| AgentOutcome::of(status).is_terminal())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::terminal_status;

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
}
