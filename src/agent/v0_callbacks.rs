//! Reading V0's callback operations (`AGENT_RUNTIME=openhands-v0`): its file
//! writes of `sessions/{conversation_id}/events/{n}.json`, one agent event each.

use serde::Deserialize;

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
