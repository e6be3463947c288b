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

use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoEndpoint, Request};
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApiService, SecurityScheme};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::AppState;
use crate::projections::time_ranges;
use crate::sql::{SqlError, SqlValue};

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

/// Every operation's answer: the typed body, or one of the error shapes.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "from_request_error")]
pub enum ApiResult<T: ToJSON> {
    #[oai(status = 200)]
    Ok(Json<T>),
    /// A query or path parameter is not valid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong bearer token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state (e.g. retrying a trigger that is not abandoned).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The database or event log is unavailable; try again.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn body(error: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody { error: error.to_owned(), message: message.into() })
}

/// poem-openapi's own extraction errors (bad parameters, failed auth), in our shape.
fn from_request_error<T: ToJSON>(err: poem::Error) -> ApiResult<T> {
    if err.status() == StatusCode::UNAUTHORIZED {
        ApiResult::Unauthorized(body("unauthorized", "a valid bearer token is required (Authorization: Bearer …)"))
    } else {
        ApiResult::BadRequest(body("invalid_parameter", err.to_string()))
    }
}

impl<T: ToJSON> ApiResult<T> {
    pub fn bad_request(error: &str, message: impl Into<String>) -> Self {
        ApiResult::BadRequest(body(error, message))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiResult::NotFound(body("not_found", message))
    }

    pub fn conflict(error: &str, message: impl Into<String>) -> Self {
        ApiResult::Conflict(body(error, message))
    }

    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "query API: database error");
        ApiResult::Unavailable(body("unavailable", "the database is unavailable; try again"))
    }
}

impl<T: ToJSON> From<SqlError> for ApiResult<T> {
    fn from(e: SqlError) -> Self {
        ApiResult::unavailable(e)
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

type Apis = (
    deliveries::DeliveriesApi,
    conversations::ConversationsApi,
    pull_requests::PullRequestsApi,
    stats::StatsApi,
    audit::AuditApi,
    installations::InstallationsApi,
    sinks::SinksApi,
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
    (service().into_endpoint().around(open_without_token), docs, spec)
}

/// Parses an ISO-8601 (RFC 3339) time parameter into microseconds since the epoch.
pub fn parse_time(name: &str, value: Option<&str>) -> Result<Option<i64>, (String, String)> {
    let Some(value) = value else { return Ok(None) };
    OffsetDateTime::parse(value, &Rfc3339)
        .map(|t| Some(i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)))
        .map_err(|_| {
            ("invalid_time".to_owned(), format!("{name} must be an RFC 3339 time such as 2026-01-07T13:47:05Z"))
        })
}

/// Microseconds since the epoch as RFC 3339.
pub fn iso(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A `WHERE` clause under construction.
#[derive(Default)]
pub struct Filter {
    clauses: Vec<String>,
    pub params: Vec<SqlValue>,
}

impl Filter {
    pub fn and(&mut self, clause: &str, value: impl Into<SqlValue>) {
        self.clauses.push(clause.to_owned());
        self.params.push(value.into());
    }

    pub fn and_some(&mut self, clause: &str, value: Option<impl Into<SqlValue>>) {
        if let Some(value) = value {
            self.and(clause, value);
        }
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// The page size asked for (validated by the parameter's bounds).
pub fn limit_of(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// Runs a list query and converts its rows: the page's items, and the cursor
/// of the next page when this one is full.
pub async fn fetch_page<T>(
    db: &crate::sql::SqlDb,
    sql: &str,
    params: Vec<crate::sql::SqlValue>,
    limit: u32,
    convert: impl Fn(&crate::sql::SqlRow) -> Result<T, SqlError>,
    position: impl Fn(&T) -> u64,
) -> Result<(Vec<T>, Option<u64>), SqlError> {
    let rows = db.query(sql, params).await?;
    let items = rows.iter().map(convert).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = next_cursor(items.iter().map(position), items.len(), limit);
    Ok((items, next_cursor))
}

/// The cursor of the next page: the last row's position when the page is full.
pub fn next_cursor(positions: impl DoubleEndedIterator<Item = u64>, returned: usize, limit: u32) -> Option<u64> {
    if returned == limit as usize {
        positions.last()
    } else {
        None
    }
}

/// The page's positions (after the cursor `after`) and `since`/`until` on a
/// read model that keeps its times per block of positions (`ranges`, see
/// [`time_ranges`]): the time filter, plus the positions outside which no
/// row can match, so that a page never walks the table from its first row.
/// One lower bound on `position`: SQLite's planner uses only one of several.
/// `Ok(false)`: no row can match at all.
pub async fn positions_and_time_window<T: ToJSON>(
    db: &crate::sql::SqlDb,
    filter: &mut Filter,
    after: u64,
    (column, ranges): (&str, &str),
    since: Option<&str>,
    until: Option<&str>,
) -> Result<bool, ApiResult<T>> {
    let since = parse_time("since", since).map_err(|(e, m)| ApiResult::bad_request(&e, m))?;
    let until = parse_time("until", until).map_err(|(e, m)| ApiResult::bad_request(&e, m))?;
    let (mut after, mut before) = (after, None);
    if since.is_some() || until.is_some() {
        let Some((from, to)) = time_ranges::positions_between(db, ranges, since, until).await? else {
            return Ok(false);
        };
        after = after.max(from.map_or(0, |from| from.saturating_sub(1)));
        before = to;
    }
    filter.and("position > ?", after);
    filter.and_some("position < ?", before);
    filter.and_some(&format!("{column} >= ?"), since);
    filter.and_some(&format!("{column} < ?"), until);
    Ok(true)
}

/// `since`/`until` as a filter on a micros column, or the 400 to answer.
pub fn time_range<T: ToJSON>(
    filter: &mut Filter,
    column: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(), ApiResult<T>> {
    let since = parse_time("since", since).map_err(|(e, m)| ApiResult::bad_request(&e, m))?;
    let until = parse_time("until", until).map_err(|(e, m)| ApiResult::bad_request(&e, m))?;
    filter.and_some(&format!("{column} >= ?"), since);
    filter.and_some(&format!("{column} < ?"), until);
    Ok(())
}
