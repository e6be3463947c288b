//! `GET /api/v1/sinks`: each sink's position, lag, last error and state.
//!
//! A plain poem route for now; it moves into the OpenAPI service when the
//! query API lands.

use std::sync::Arc;

use poem::http::{header, StatusCode};
use poem::web::Data;
use poem::{handler, IntoResponse, Request, Response};
use serde::Serialize;

use super::{SinkStatus, SinkView};
use crate::api::error::{json_response, ApiError};
use crate::config::ApiToken;
use crate::store::EventStore;

/// What the sinks route needs.
#[derive(Clone)]
pub struct SinksApi {
    pub store: Arc<dyn EventStore>,
    pub sinks: Arc<[Arc<SinkStatus>]>,
    pub api_token: Option<ApiToken>,
}

#[derive(Serialize)]
struct SinkList {
    head: u64,
    sinks: Vec<SinkView>,
}

#[handler]
pub async fn list_sinks(req: &Request, api: Data<&SinksApi>) -> Response {
    if let Err(e) = check_bearer(req, api.api_token.as_ref()) {
        return e.into_response();
    }
    let head = match api.store.head().await {
        Ok(head) => head,
        Err(e) => {
            tracing::warn!(error = %e, "reading the log head for /api/v1/sinks");
            return ApiError::unavailable("store_unavailable", "the event log is unavailable", 5).into_response();
        }
    };
    let sinks = api.sinks.iter().map(|s| s.view(head)).collect();
    json_response(StatusCode::OK, &SinkList { head: head.0, sinks })
}

/// `Authorization: Bearer <token>` when a token is configured (compared in constant time).
pub fn check_bearer(req: &Request, token: Option<&ApiToken>) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Ok(());
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match presented {
        Some(presented) if token.matches(presented.trim()) => Ok(()),
        _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required")),
    }
}
