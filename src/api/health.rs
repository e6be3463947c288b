use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, IntoResponse, Response};
use serde_json::json;

use super::error::{json_response, ApiError};
use super::AppState;
use crate::projections::{read_model, read_models};

/// The process is up.
#[handler]
pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// The event log answers and can be written now (a delivery would be
/// stored); the detail shows each read model's lag (log head minus its
/// checkpoint).
#[handler]
pub async fn readyz(state: Data<&AppState>) -> Response {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness check failed: the event log does not answer");
        return ApiError::unavailable("store_unavailable", "the event store is not reachable", 5).into_response();
    }
    match state.store.check_writable().await {
        Ok(()) => {
            let names: Vec<&'static str> = read_models().iter().map(|m| m.name()).collect();
            let lag = match state.store.head().await {
                Ok(head) => read_model::lag(&state.db, head, &names).await.ok(),
                Err(_) => None,
            };
            let lag: serde_json::Map<String, serde_json::Value> =
                lag.unwrap_or_default().into_iter().map(|(name, lag)| (name.to_owned(), json!(lag))).collect();
            json_response(StatusCode::OK, &json!({"status": "ready", "projection_lag": lag}))
        }
        Err(e) => {
            // The detail stays in the log: /readyz is unauthenticated.
            tracing::warn!(error = %e, "readiness check failed: the event log cannot be written");
            ApiError::unavailable(
                "log_not_writable",
                "the event log cannot be written now; deliveries would be refused (the server log has the cause)",
                5,
            )
            .into_response()
        }
    }
}
