//! The query and admin API under `/api/v1` (poem-openapi): typed objects,
//! cursor pagination by log position, bearer auth, and every error as
//! `{"error", "message"}` JSON — poem-openapi's own parse errors included.

mod admin;
mod audit;
mod conversations;
mod deliveries;
mod installations;
mod pull_requests;
mod sinks;
mod stats;
mod status;

use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request};
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApiService, SecurityScheme};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::ApiError;
use super::log_text::LogText;
use super::AppState;
use crate::sql::SqlError;
use crate::store::StoreError;

/// Page size when the request names none, and the largest allowed.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// The error body of every answer that is not a success.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ErrorBody {
    /// A stable, machine-readable code such as `invalid_parameter`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// What an operation answers: its body, or an [`ApiError`] (`?` converts a
/// [`SqlError`] or [`StoreError`] into the `503`). The spec lists the body's
/// `200` and every error shape, as for [`ApiResult`].
pub type Answer<T> = Result<Success<T>, ApiError>;

/// `Ok(Success)` with `body`.
pub fn ok<T>(body: T) -> Answer<T> {
    Ok(Success(Outcome::Body(body)))
}

/// `Ok(Success)` with `T`'s JSON already written (for a body that holds raw
/// JSON: poem-openapi writes a body through a `serde_json::Value`).
pub fn ok_json_bytes<T>(json: Vec<u8>) -> Answer<T> {
    let response = poem::Response::builder().content_type("application/json; charset=utf-8").body(json);
    Ok(Success(Outcome::Written(response)))
}

/// An operation's `200` with `T` as JSON. It is also what answers when
/// poem-openapi cannot extract the operation's parameters or auth (a
/// `Result`'s bad-request handler is its success type's): the rejection, in
/// [`ApiError`]'s shape.
pub struct Success<T>(Outcome<T>);

enum Outcome<T> {
    Body(T),
    /// `T` as JSON, written by the operation (see [`ok_json_bytes`]).
    Written(poem::Response),
    Rejected(ApiError),
}

impl<T: ToJSON> IntoResponse for Success<T> {
    fn into_response(self) -> poem::Response {
        match self.0 {
            Outcome::Body(body) => Json(body).into_response(),
            Outcome::Written(response) => response,
            Outcome::Rejected(e) => ErrorResponse::from(e).into_response(),
        }
    }
}

impl<T: ToJSON + Send> ApiResponse for Success<T> {
    const BAD_REQUEST_HANDLER: bool = true;

    fn meta() -> MetaResponses {
        Json::<T>::meta()
    }

    fn register(registry: &mut Registry) {
        Json::<T>::register(registry);
    }

    fn from_parse_request_error(err: poem::Error) -> Self {
        Success(Outcome::Rejected(request_error(err)))
    }
}

/// The error shapes every operation documents, and how an [`ApiError`] goes out
/// (`{"error", "message"}` as JSON, no `Retry-After`).
#[derive(ApiResponse)]
enum ErrorResponse {
    /// A query or path parameter is not valid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong bearer token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Without `HOOKWISE_API_TOKEN` the API answers only local requests: a
    /// loopback `Host`, no proxy's forwarding headers, no change from a page
    /// of another origin (`api_token_required`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state (e.g. retrying a trigger that is not abandoned).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// A request that changes something carries `Content-Type: application/json`,
    /// or no body and no `Content-Type` (`unsupported_media_type`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The database or event log is unavailable; try again.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        let status = e.status;
        let body = Json(ErrorBody { error: e.error.to_owned(), message: e.message });
        match status {
            StatusCode::UNAUTHORIZED => ErrorResponse::Unauthorized(body),
            StatusCode::FORBIDDEN => ErrorResponse::Forbidden(body),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorResponse::UnsupportedMediaType(body),
            StatusCode::NOT_FOUND => ErrorResponse::NotFound(body),
            StatusCode::CONFLICT => ErrorResponse::Conflict(body),
            StatusCode::SERVICE_UNAVAILABLE => ErrorResponse::Unavailable(body),
            _ => ErrorResponse::BadRequest(body),
        }
    }
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        ErrorResponse::meta()
    }

    fn register(registry: &mut Registry) {
        ErrorResponse::register(registry);
    }
}

/// An operation's error leaves it as its response (see [`answer_errors`]).
impl From<ApiError> for poem::Error {
    fn from(e: ApiError) -> Self {
        ErrorResponse::from(e).into()
    }
}

impl ApiError {
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(error: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, error, message)
    }

    /// The query API's `503`: logged, answered without its cause.
    pub fn database_unavailable(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %LogText::bounded(&error.to_string(), 512), "query API: database error");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database is unavailable; try again")
    }
}

impl From<SqlError> for ApiError {
    fn from(e: SqlError) -> Self {
        ApiError::database_unavailable(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::database_unavailable(e)
    }
}

/// poem-openapi's own extraction errors (bad parameters, failed auth), in our shape.
fn request_error(err: poem::Error) -> ApiError {
    if err.status() == StatusCode::UNAUTHORIZED {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer …)",
        )
    } else {
        ApiError::bad_request("invalid_parameter", err.to_string())
    }
}

/// `Authorization: Bearer <HOOKWISE_API_TOKEN>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_token")]
pub struct ApiAuth(());

async fn check_token(req: &Request, bearer: Bearer) -> Option<()> {
    let state = req.data::<AppState>()?;
    match &state.api_token {
        None => Some(()),
        Some(token) => token.matches(&bearer.token).then_some(()),
    }
}

/// Without a configured token (allowed on loopback binds only) the API is
/// open: stand in a token so that the security scheme lets requests through.
async fn open_without_token<E: Endpoint>(next: E, mut req: Request) -> poem::Result<E::Output> {
    let open = req.data::<AppState>().is_some_and(|s| s.api_token.is_none());
    if open && !req.headers().contains_key(poem::http::header::AUTHORIZATION) {
        req.headers_mut()
            .insert(poem::http::header::AUTHORIZATION, poem::http::HeaderValue::from_static("Bearer open"));
    }
    next.call(req).await
}

/// An operation's [`ApiError`] leaves the service as a `poem::Error` made of
/// its response: answer that response as it is, before the routes' catch-all
/// renders errors of its own (unknown routes, wrong methods) in its words.
async fn answer_errors<E: Endpoint>(next: E, req: Request) -> poem::Result<poem::Response> {
    match next.call(req).await {
        Ok(output) => Ok(output.into_response()),
        Err(e) if e.is_from_response() => Ok(e.into_response()),
        Err(e) => Err(e),
    }
}

type Apis = (
    deliveries::DeliveriesApi,
    conversations::ConversationsApi,
    pull_requests::PullRequestsApi,
    stats::StatsApi,
    audit::AuditApi,
    installations::InstallationsApi,
    sinks::SinksApi,
    status::StatusApi,
    admin::AdminApi,
);

pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            deliveries::DeliveriesApi,
            conversations::ConversationsApi,
            pull_requests::PullRequestsApi,
            stats::StatsApi,
            audit::AuditApi,
            installations::InstallationsApi,
            sinks::SinksApi,
            status::StatusApi,
            admin::AdminApi,
        ),
        "hookwise",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Query and admin API over hookwise's read models. Lists are ordered by log position; page with `after` = the previous page's `next_cursor`.")
    .server("/api/v1")
}

/// The spec as pretty JSON (what `hookwise openapi` writes).
pub fn spec_json() -> String {
    service().spec()
}

/// `/api/v1`, `/docs` and `/openapi.json` endpoints.
pub fn endpoints() -> (impl Endpoint, impl Endpoint, impl Endpoint) {
    // Rendered once: poem-openapi's own UI/spec endpoints borrow the service.
    let html = service().swagger_ui_html();
    let docs = poem::endpoint::make_sync(move |_| poem::web::Html(html.clone()));
    let spec_text = spec_json();
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder().content_type("application/json").body(spec_text.clone())
    });
    (service().into_endpoint().around(open_without_token).around(answer_errors), docs, spec)
}

/// Parses an ISO-8601 (RFC 3339) time parameter into microseconds since the epoch.
pub fn parse_time(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    OffsetDateTime::parse(value, &Rfc3339)
        .map(|t| Some(i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)))
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_time",
                format!("{name} must be an RFC 3339 time such as 2026-01-07T13:47:05Z"),
            )
        })
}

/// `since` and `until` parsed (see [`parse_time`]).
pub fn time_window(since: Option<&str>, until: Option<&str>) -> Result<(Option<i64>, Option<i64>), ApiError> {
    Ok((parse_time("since", since)?, parse_time("until", until)?))
}

/// Microseconds since the epoch as RFC 3339.
pub fn iso(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The page size asked for (validated by the parameter's bounds).
pub fn limit_of(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}
