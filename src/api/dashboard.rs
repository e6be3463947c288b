//! The read-only dashboard at `/`: one HTML page, its stylesheet and its
//! script, embedded in the binary. The page reads only the documented
//! `/api/v1` endpoints from the same origin, with the API's bearer token
//! when one is set (docs/decisions/dashboard.md).

use poem::http::{header, HeaderValue, StatusCode};
use poem::{handler, Response};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");
const ICON_SVG: &str = include_str!("dashboard/icon.svg");

/// Nothing but this origin's own files and API: no inline script or style,
/// no other origin, never inside a frame.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `GET /`: the page; its views live behind `#/…` (`#/conversations/{id}`, `#/audit?kind=…`).
#[handler]
pub fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

#[handler]
pub fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

#[handler]
pub fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[handler]
pub fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}
