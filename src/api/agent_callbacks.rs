//! `POST /event-webhook/batch`: the V0 agent runtime's batched callbacks
//! (`AGENT_RUNTIME=openhands-v0`). The key is checked before any of the body
//! is read, and the body is read with a cap, as are its operations and
//! state changes (`commands::receive_agent_batch`).

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Body, IntoResponse, Request, Response};

use super::error::{json_response, ApiError};
use super::json_array::read_json_array;
use super::limited_body::read_limited;
use super::log_text::LogText;
use super::AppState;
use crate::commands::receive_agent_batch::{receive_agent_batch, BatchError, MAX_BATCH_OPERATIONS};
use crate::events::AgentOperation;

/// Batches are flushed by the runtime at 1 MiB; leave room.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large", message)
}

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
    let operations = read_json_array::<AgentOperation>(&body, MAX_BATCH_OPERATIONS).map_err(|e| {
        ApiError::bad_request("invalid_batch", format!("expected a JSON array of {{method, path, content}}: {e}"))
    })?;
    drop(body);
    if operations.total > MAX_BATCH_OPERATIONS {
        return Err(too_large(format!(
            "the batch has {} operations, more than {MAX_BATCH_OPERATIONS}; nothing was stored",
            operations.total
        )));
    }
    receive_agent_batch(state.store.as_ref(), &state.db, operations.items).await.map_err(|e| match e {
        BatchError::Invalid { .. } => ApiError::bad_request("invalid_batch", e.to_string()),
        BatchError::TooManyStateChanges => too_large(e.to_string()),
        BatchError::Store(_) | BatchError::Sql(_) => {
            tracing::error!(error = %LogText::bounded(&e.to_string(), 512), "storing agent callbacks failed");
            ApiError::unavailable("store_unavailable", "the event log is unavailable; nothing was stored", 30)
        }
    })
}
