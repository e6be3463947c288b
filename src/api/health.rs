use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, IntoResponse, Response};
use serde_json::json;

use super::error::{json_response, ApiError};
use super::AppState;

/// The process is up.
#[handler]
pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// The event store answers.
#[handler]
pub async fn readyz(state: Data<&AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => json_response(StatusCode::OK, &json!({"status": "ready"})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::unavailable("store_unavailable", "the event store is not reachable", 5).into_response()
        }
    }
}
