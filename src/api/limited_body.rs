//! Reading a request body with a cap: a body that declares or streams more
//! than `max` bytes is refused (`413`) as soon as it passes the cap, without
//! buffering the rest. The buffer grows with what arrives, never with what is
//! declared: a client that declares 25 MiB and sends nothing holds nothing.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use poem::http::{header, HeaderMap, StatusCode};
use poem::Body;

use super::error::ApiError;

/// The most reserved up front: enough for most deliveries in one allocation.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// The whole body, if it is at most `max` bytes.
pub async fn read_limited(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let mut buffer = BytesMut::with_capacity(declared.map_or(16 * 1024, |n| n.min(INITIAL_CAPACITY)));
    let mut chunks = body.into_bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request("unreadable_body", format!("the body could not be read: {e}")))?;
        if buffer.len() + chunk.len() > max {
            return Err(too_large(max));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the body exceeds {max} bytes"))
}
