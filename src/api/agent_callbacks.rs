//! `POST /event-webhook/batch`: the V0 agent runtime's batched callbacks
//! (`AGENT_RUNTIME=openhands-v0`). The key is checked before any of the body
//! is read, and the body is read with a cap.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, IntoResponse, Request, Response};

use super::error::{json_response, ApiError};
use super::limited_body::read_limited;
use super::log_text::LogText;
use super::AppState;
use crate::commands::receive_agent_batch::{receive_agent_batch, BatchError};
use crate::events::AgentOperation;

/// Batches are flushed by the runtime at 1 MiB; leave room.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

#[handler]
pub async fn receive_agent_callbacks(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    match accept(req, body, &state).await {
        Ok(receipt) => json_response(StatusCode::ACCEPTED, &receipt),
        Err(e) => e.into_response(),
    }
}

async fn accept(
    req: &Request,
    body: Body,
    state: &AppState,
) -> Result<crate::commands::receive_agent_batch::BatchReceipt, ApiError> {
    let Some(secret) = &state.callback_secret else {
        return Err(ApiError::unavailable("callbacks_not_configured", "AGENT_CALLBACK_SECRET is not set", 300));
    };
    let presented = req.headers().get("x-session-api-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    if presented.is_empty() || !secret.matches(presented) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "X-Session-API-Key is missing or wrong"));
    }
    let body = read_limited(req.headers(), body, MAX_BATCH_BYTES).await?;
    let operations: Vec<AgentOperation> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_batch", format!("expected a JSON array of {{method, path, content}}: {e}"))
    })?;
    receive_agent_batch(state.store.as_ref(), &state.db, operations).await.map_err(|e| match e {
        BatchError::Invalid { .. } => ApiError::bad_request("invalid_batch", e.to_string()),
        BatchError::Store(_) | BatchError::Sql(_) => {
            tracing::error!(error = %LogText::bounded(&e.to_string(), 512), "storing agent callbacks failed");
            ApiError::unavailable("store_unavailable", "the event log is unavailable; nothing was stored", 30)
        }
    })
}
