//! The OpenHands agent server's webhooks (`AGENT_RUNTIME=openhands-agent-server`,
//! configured on the agent server with `OH_WEBHOOKS_0_BASE_URL=https://<hookwise>/agent-server`):
//! - `POST /agent-server/events/{conversation_id}`: a JSON array of agent
//!   events (at most `MAX_AGENT_SERVER_BATCH_EVENTS`), each appended to
//!   `conversation-{id}` before the answer;
//! - `POST /agent-server/conversations`: a `ConversationInfo`.
//!
//! Both are authenticated by `X-Session-API-Key` equal to `AGENT_API_KEY`
//! (compared in constant time) before the body is read, and the body is read
//! with a limit: a larger one is refused without being buffered.

use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Path};
use poem::{handler, Body, IntoResponse, Request, Response};
use serde_json::value::RawValue;

use super::error::{json_response, ApiError};
use super::json_array::read_json_array;
use super::limited_body::read_limited;
use super::log_text::LogText;
use super::AppState;
use crate::commands::receive_agent_server_events::{
    receive_agent_server_events as receive, AgentServerEventsError, AgentServerReceipt, MAX_AGENT_SERVER_BATCH_EVENTS,
};
use crate::metrics as names;

/// The agent server posts batches of at most 5 MiB by default
/// (`OH_WEBHOOKS_0_MAX_BATCH_BYTES`); a single larger event is sent alone.
pub const MAX_AGENT_SERVER_BODY_BYTES: usize = 16 * 1024 * 1024;

#[handler]
pub async fn receive_agent_server_events(
    req: &Request,
    Path(conversation_id): Path<String>,
    body: Body,
    state: Data<&AppState>,
) -> Response {
    match accept_events(req.headers(), &conversation_id, body, &state).await {
        Ok(receipt) => {
            names::count_agent_server_events(receipt.accepted, receipt.duplicates, receipt.ignored);
            if receipt.ignored > 0 {
                tracing::info!(ignored = receipt.ignored, "agent-server events of an unknown conversation ignored");
            }
            json_response(StatusCode::OK, &receipt)
        }
        Err(e) => e.into_response(),
    }
}

/// `ConversationInfo` posts are authenticated and checked, then answered 200
/// and not stored: hookwise follows a run through its events (the terminal
/// `execution_status` arrives as a `ConversationStateUpdateEvent`, and the
/// agent server does not post a `ConversationInfo` when a run finishes), and a
/// `ConversationInfo` carries the agent's whole configuration, LLM settings
/// included, which has no place in an immutable log.
#[handler]
pub async fn receive_agent_server_conversation(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let result = async {
        authenticate(req.headers(), &state)?;
        let body = read_limited(req.headers(), body, MAX_AGENT_SERVER_BODY_BYTES).await?;
        let info: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("invalid_json", format!("expected a ConversationInfo object: {e}")))?;
        drop(info);
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => json_response(StatusCode::OK, &serde_json::json!({"status": "ignored"})),
        Err(e) => e.into_response(),
    }
}

async fn accept_events(
    headers: &HeaderMap,
    conversation_id: &str,
    body: Body,
    state: &AppState,
) -> Result<AgentServerReceipt, ApiError> {
    authenticate(headers, state)?;
    let body = read_limited(headers, body, MAX_AGENT_SERVER_BODY_BYTES).await?;
    let events = read_json_array::<Box<RawValue>>(&body, MAX_AGENT_SERVER_BATCH_EVENTS)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("expected a JSON array of events: {e}")))?;
    drop(body);
    if events.total > MAX_AGENT_SERVER_BATCH_EVENTS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "the batch has {} events, more than {MAX_AGENT_SERVER_BATCH_EVENTS}; nothing was stored",
                events.total
            ),
        ));
    }
    receive(state.store.as_ref(), &state.db, conversation_id, events.items).await.map_err(|e| match e {
        AgentServerEventsError::Invalid { .. } => ApiError::bad_request("invalid_event", e.to_string()),
        AgentServerEventsError::Store(_) | AgentServerEventsError::Sql(_) => {
            tracing::error!(error = %LogText::bounded(&e.to_string(), 512), "storing agent-server events failed");
            ApiError::unavailable("store_unavailable", "the event log is unavailable; nothing was stored", 30)
        }
    })
}

fn authenticate(headers: &HeaderMap, state: &AppState) -> Result<(), ApiError> {
    let Some(key) = &state.agent_server_key else {
        return Err(ApiError::unavailable(
            "agent_server_not_configured",
            "agent-server webhooks need AGENT_RUNTIME=openhands-agent-server and AGENT_API_KEY",
            300,
        ));
    };
    let presented = headers.get("x-session-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    if presented.is_empty() || !key.matches(presented) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "X-Session-API-Key is missing or wrong"));
    }
    Ok(())
}
