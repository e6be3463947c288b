//! Reading the agent server's webhook events (`AGENT_RUNTIME=openhands-agent-server`):
//! which one ends a run, and what the run's events say about its result.

/// The `execution_status` an agent-server event reports, if any:
/// `{"kind":"ConversationStateUpdateEvent","key":"execution_status","value":…}`,
/// or a full state snapshot (`"key":"full_state"`) carrying one. Which of them
/// end a run is the lifecycle's to say (`triggers::AgentOutcome`).
pub fn execution_status(event: &serde_json::Value) -> Option<&str> {
    if event.get("kind")?.as_str()? != "ConversationStateUpdateEvent" {
        return None;
    }
    let value = event.get("value")?;
    let status = match event.get("key")?.as_str()? {
        "execution_status" => value.as_str()?,
        "full_state" => value.get("execution_status")?.as_str()?,
        _ => return None,
    };
    Some(status)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_execution_status_is_read_from_updates_and_snapshots() {
        let update = |key: &str, value: serde_json::Value| json!({"kind": "ConversationStateUpdateEvent", "id": "e", "key": key, "value": value});
        assert_eq!(execution_status(&update("execution_status", json!("finished"))), Some("finished"));
        assert_eq!(execution_status(&update("execution_status", json!("running"))), Some("running"));
        assert_eq!(execution_status(&update("full_state", json!({"execution_status": "idle"}))), Some("idle"));
        assert_eq!(execution_status(&update("agent_status", json!("finished"))), None);
        assert_eq!(execution_status(&json!({"kind": "MessageEvent", "key": "execution_status"})), None);
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
