//! `POST /integration/github/events`: verify, record durably, then answer.

use std::time::Instant;

use poem::http::{header, HeaderMap, StatusCode};
use poem::web::Data;
use poem::{handler, Body, IntoResponse, Request, Response};
use serde::Serialize;

use super::error::{json_response, ApiError};
use super::limited_body::read_limited;
use super::log_text::LogText;
use super::AppState;
use crate::commands::receive_webhook::{receive_webhook, DeliveryHeaders, Receipt, ReceiveError};
use crate::github::signature::SignatureError;
use crate::github::webhook::PayloadError;
use crate::metrics as names;

/// GitHub caps payloads at 25 MB; anything larger is cut off unread.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

#[derive(Serialize)]
struct Accepted<'a> {
    status: &'static str,
    delivery: &'a str,
    position: u64,
}

#[handler]
pub async fn receive_github_webhook(req: &Request, body: Body, state: Data<&AppState>) -> Response {
    let started = Instant::now();
    let headers = req.headers();
    let delivery = headers.get("x-github-delivery").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let event = headers.get("x-github-event").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
    let result = accept(headers, body, &state).await;
    let (response, status, action) = match result {
        Ok(receipt) => {
            let status = if receipt.duplicate { "duplicate" } else { "accepted" };
            names::count_delivery_stored(&event, receipt.duplicate);
            let body = Accepted { status, delivery: &delivery, position: receipt.position.0 };
            (json_response(StatusCode::OK, &body), status, receipt.action)
        }
        Err(e) => {
            let code = e.error;
            // `known_event` bounds the label even though the header may be unverified.
            metrics::counter!(names::DELIVERIES, "event" => names::known_event(&event), "outcome" => "rejected", "reason" => code)
                .increment(1);
            (e.into_response(), code, None)
        }
    };
    names::record_intake_duration(started.elapsed().as_secs_f64());
    // The headers are logged whether or not they passed validation: bounded and escaped.
    tracing::info!(
        delivery = %LogText::new(&delivery),
        event = %LogText::new(&event),
        action = %LogText::new(action.as_deref().unwrap_or("-")),
        status,
        http_status = response.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        "delivery"
    );
    response
}

async fn accept(headers: &HeaderMap, body: Body, state: &AppState) -> Result<Receipt, ApiError> {
    if !state.webhooks_enabled {
        return Err(ApiError::unavailable(
            "webhooks_disabled",
            "webhook intake is disabled (GITHUB_WEBHOOKS_ENABLED=false)",
            300,
        ));
    }
    check_content_type(headers)?;
    let event =
        header_token(headers, "x-github-event", 64, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')?
            .ok_or_else(|| ApiError::bad_request("missing_event", "the X-GitHub-Event header is required"))?;
    let delivery_id = header_token(headers, "x-github-delivery", 64, |c| c.is_ascii_alphanumeric() || c == '-')?
        .ok_or_else(|| ApiError::bad_request("missing_delivery", "the X-GitHub-Delivery header is required"))?;
    let hook_id = header_token(headers, "x-github-hook-id", 20, |c| c.is_ascii_digit())?.unwrap_or("0");
    let signature = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
    if signature.is_none() {
        return Err(signature_error(SignatureError::Missing));
    }

    // A GUID names one delivery whatever its case.
    let delivery_id = delivery_id.to_ascii_lowercase();

    let body = read_limited(headers, body, MAX_BODY_BYTES).await?;
    let secret = state.secrets.verify(signature, &body).map_err(signature_error)?;
    let headers =
        DeliveryHeaders { event, delivery_id: &delivery_id, hook_id, signature: signature.unwrap_or_default() };
    receive_webhook(state.store.as_ref(), &headers, secret, body).await.map_err(|e| match e {
        ReceiveError::Payload(PayloadError::NotUtf8) => {
            ApiError::bad_request("invalid_utf8", "the body is not valid UTF-8")
        }
        ReceiveError::Payload(PayloadError::NotAnObject) => {
            ApiError::bad_request("not_an_object", "the body must be a JSON object")
        }
        ReceiveError::Payload(PayloadError::InvalidJson(detail)) => {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {detail}"))
        }
        ReceiveError::Conflict { delivery_id, position } => {
            // Counted by the handler as hookwise_deliveries_total{outcome="rejected",reason="delivery_conflict"}.
            tracing::warn!(
                delivery = %delivery_id,
                position = position.0,
                "a delivery GUID already in the log arrived with a different body; the new body was not stored"
            );
            ApiError::new(
                StatusCode::CONFLICT,
                "delivery_conflict",
                format!(
                    "delivery {delivery_id} is already in the log (position {position}) with a different body; \
                     this body was not stored"
                ),
            )
        }
        ReceiveError::Store(e) => {
            tracing::error!(error = %LogText::bounded(&e.to_string(), 512), "append failed");
            ApiError::unavailable("store_unavailable", "the event log is unavailable; the delivery was not stored", 30)
        }
    })
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "deliveries must be sent as application/json (set the webhook's content type to JSON)",
        ))
    }
}

/// A header that must be a short token of allowed characters, if present.
fn header_token<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
    max_len: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<Option<&'h str>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(v) if !v.is_empty() && v.len() <= max_len && v.chars().all(&allowed) => Ok(Some(v)),
        _ => Err(ApiError::bad_request("invalid_header", format!("the {name} header is not valid"))),
    }
}

fn signature_error(e: SignatureError) -> ApiError {
    let message = match e {
        SignatureError::Missing => "the X-Hub-Signature-256 header is required",
        SignatureError::Malformed => "X-Hub-Signature-256 must be sha256= followed by 64 hex digits",
        SignatureError::Mismatch => "the signature does not match the body",
    };
    ApiError::forbidden("invalid_signature", message)
}
