use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

use super::{fetch_page, iso, limit_of, positions_and_time_window, ApiAuth, ApiResult, Filter};
use crate::api::AppState;
use crate::projections::audit_log;
use crate::sql::{SqlError, SqlRow};

#[derive(Tags)]
enum Tag {
    /// Every meaningful fact, with who, what and when.
    Audit,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditEntry {
    /// Log position of the event it came from; the pagination cursor.
    pub position: u64,
    /// e.g. `delivery_accepted`, `trigger_detected`, `permission_denied`, `admin_action`.
    pub kind: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub repository: Option<String>,
    /// RFC 3339.
    pub occurred_at: String,
    /// The type of the event it came from.
    pub event_type: String,
    pub event_id: String,
    pub stream: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<u64>,
}

fn entry(row: &SqlRow) -> Result<AuditEntry, SqlError> {
    Ok(AuditEntry {
        position: row.get(0)?,
        kind: row.get(1)?,
        actor: row.get(2)?,
        target: row.get(3)?,
        repository: row.get(4)?,
        occurred_at: iso(row.get(5)?),
        event_type: row.get(6)?,
        event_id: row.get(7)?,
        stream: row.get(8)?,
        detail: row.get(9)?,
    })
}

pub struct AuditApi;

#[OpenApi(tag = "Tag::Audit")]
impl AuditApi {
    /// The audit log, oldest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/audit", method = "get", operation_id = "list_audit")]
    async fn list(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// Only rows after this cursor (a log position).
        after: Query<Option<u64>>,
        /// Page size (1–500, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        kind: Query<Option<String>>,
        actor: Query<Option<String>>,
        repository: Query<Option<String>>,
        /// At or after (RFC 3339).
        since: Query<Option<String>>,
        /// Before (RFC 3339).
        until: Query<Option<String>>,
    ) -> ApiResult<AuditPage> {
        let limit = limit_of(limit.0);
        let mut filter = Filter::default();
        filter.and_some("kind = ?", kind.0);
        filter.and_some("actor = ?", actor.0);
        filter.and_some("repository = ?", repository.0);
        let window = positions_and_time_window(
            &state.db,
            &mut filter,
            after.0.unwrap_or(0),
            ("occurred_at", audit_log::TIME_RANGES),
            since.0.as_deref(),
            until.0.as_deref(),
        );
        match window.await {
            Ok(true) => {}
            Ok(false) => return ApiResult::Ok(Json(AuditPage { items: Vec::new(), next_cursor: None })),
            Err(e) => return e,
        }
        let sql = format!(
            "SELECT position, kind, actor, target, repository, occurred_at, event_type, event_id, stream, detail
             FROM audit_log{} ORDER BY position LIMIT {limit}",
            filter.sql()
        );
        match fetch_page(&state.db, &sql, filter.params, limit, entry, |item| item.position).await {
            Ok((items, next_cursor)) => ApiResult::Ok(Json(AuditPage { items, next_cursor })),
            Err(e) => e.into(),
        }
    }
}
