use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

use super::{fetch_page, iso, limit_of, positions_and_time_window, ApiAuth, ApiResult, Filter};
use crate::api::AppState;
use crate::projections::deliveries as read_model;
use crate::sql::{SqlError, SqlRow};

#[derive(Tags)]
enum Tag {
    /// Verified GitHub deliveries as stored, and what became of each.
    Deliveries,
}

/// A stored delivery.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Delivery {
    /// Log position of its `WebhookReceived` event; the pagination cursor.
    pub position: u64,
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// `X-GitHub-Hook-ID`.
    pub hook_id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    pub action: Option<String>,
    /// `owner/name`.
    pub repository: Option<String>,
    pub repository_id: Option<u64>,
    pub sender: Option<String>,
    /// `User`, `Bot` or `Organization`.
    pub sender_type: Option<String>,
    pub installation_id: Option<u64>,
    /// When it was recorded (RFC 3339).
    pub received_at: String,
    /// Which configured secret verified it: `current` or `previous`.
    pub secret: String,
    /// `ignored`, `trigger` or `rejected`.
    pub outcome: String,
    /// Why it was rejected, if it was.
    pub reason: Option<String>,
    /// The trigger it caused, if any.
    pub trigger_id: Option<String>,
}

/// A stored delivery with its body.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryDetail {
    #[oai(flatten)]
    pub delivery: Delivery,
    /// The body exactly as GitHub sent it, parsed as JSON.
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<u64>,
}

const COLUMNS: &str = "position, delivery_id, hook_id, event, action, repository, repository_id, sender, sender_type,
    installation_id, received_at, secret, outcome, reason, trigger_id, stream";

fn delivery(row: &SqlRow) -> Result<Delivery, SqlError> {
    Ok(Delivery {
        position: row.get(0)?,
        delivery_id: row.get(1)?,
        hook_id: row.get(2)?,
        event: row.get(3)?,
        action: row.get(4)?,
        repository: row.get(5)?,
        repository_id: row.get(6)?,
        sender: row.get(7)?,
        sender_type: row.get(8)?,
        installation_id: row.get(9)?,
        received_at: iso(row.get(10)?),
        secret: row.get(11)?,
        outcome: row.get(12)?,
        reason: row.get(13)?,
        trigger_id: row.get(14)?,
    })
}

pub struct DeliveriesApi;

#[OpenApi(tag = "Tag::Deliveries")]
impl DeliveriesApi {
    /// List deliveries, oldest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/deliveries", method = "get", operation_id = "list_deliveries")]
    async fn list(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// Only rows after this cursor (a log position).
        after: Query<Option<u64>>,
        /// Page size (1–500, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `owner/name`.
        repository: Query<Option<String>>,
        /// `X-GitHub-Event`, e.g. `issue_comment`.
        event: Query<Option<String>>,
        action: Query<Option<String>>,
        /// The sender's login.
        sender: Query<Option<String>>,
        /// `ignored`, `trigger` or `rejected`.
        status: Query<Option<String>>,
        /// Received at or after (RFC 3339).
        since: Query<Option<String>>,
        /// Received before (RFC 3339).
        until: Query<Option<String>>,
    ) -> ApiResult<DeliveryPage> {
        let limit = limit_of(limit.0);
        let mut filter = Filter::default();
        filter.and_some("repository = ?", repository.0);
        filter.and_some("event = ?", event.0);
        filter.and_some("action = ?", action.0);
        filter.and_some("sender = ?", sender.0);
        filter.and_some("outcome = ?", status.0);
        let window = positions_and_time_window(
            &state.db,
            &mut filter,
            after.0.unwrap_or(0),
            ("received_at", read_model::TIME_RANGES),
            since.0.as_deref(),
            until.0.as_deref(),
        );
        match window.await {
            Ok(true) => {}
            Ok(false) => return ApiResult::Ok(Json(DeliveryPage { items: Vec::new(), next_cursor: None })),
            Err(e) => return e,
        }
        let sql = format!("SELECT {COLUMNS} FROM deliveries{} ORDER BY position LIMIT {limit}", filter.sql());
        match fetch_page(&state.db, &sql, filter.params, limit, delivery, |item| item.position).await {
            Ok((items, next_cursor)) => ApiResult::Ok(Json(DeliveryPage { items, next_cursor })),
            Err(e) => e.into(),
        }
    }

    /// One delivery with its raw payload.
    #[oai(path = "/deliveries/:delivery_id", method = "get", operation_id = "get_delivery")]
    async fn get(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// `X-GitHub-Delivery`.
        delivery_id: Path<String>,
    ) -> ApiResult<DeliveryDetail> {
        let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE delivery_id = ? ORDER BY position LIMIT 1");
        let rows = match state.db.query(&sql, crate::sql_params![delivery_id.0.as_str()]).await {
            Ok(rows) => rows,
            Err(e) => return e.into(),
        };
        let Some(row) = rows.first() else {
            return ApiResult::not_found(format!("no delivery {}", delivery_id.0));
        };
        let (item, stream) = match (delivery(row), row.get::<String>(15)) {
            (Ok(item), Ok(stream)) => (item, stream),
            (Err(e), _) | (_, Err(e)) => return e.into(),
        };
        let events = match state.store.read_stream(&stream, 0, 1).await {
            Ok(events) => events,
            Err(e) => return ApiResult::unavailable(e),
        };
        let payload = events
            .first()
            .and_then(|e| e.payload.as_deref())
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or(serde_json::Value::Null);
        ApiResult::Ok(Json(DeliveryDetail { delivery: item, payload }))
    }
}
