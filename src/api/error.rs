//! The one error shape of every HTTP answer: `{"error": code, "message": text}`.

use poem::http::{header, StatusCode};
use poem::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    #[serde(skip)]
    pub retry_after: Option<u32>,
    pub error: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, retry_after: None, error, message: message.into() }
    }

    pub fn bad_request(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }

    pub fn forbidden(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error, message)
    }

    pub fn unavailable(error: &'static str, message: impl Into<String>, retry_after: u32) -> Self {
        ApiError { retry_after: Some(retry_after), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, error, message) }
    }
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder().status(status).header(header::CONTENT_TYPE, "application/json").body(bytes)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Turns poem's own errors (unknown route, wrong method, …) into the same shape.
pub async fn render_poem_error(err: poem::Error) -> Response {
    let status = err.status();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        "this route does not take that method".to_owned()
    } else if status.is_server_error() {
        "internal error".to_owned()
    } else {
        err.to_string()
    };
    ApiError::new(status, code, message).into_response()
}
