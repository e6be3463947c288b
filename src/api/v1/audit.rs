use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{Object, OpenApi, Tags};

use super::{iso, limit_of, ok, time_window, Answer, ApiAuth};
use crate::api::AppState;
use crate::projections::audit_log::{self, AuditFilter, AuditRow};

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

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            position: row.position,
            kind: row.kind,
            actor: row.actor,
            target: row.target,
            repository: row.repository,
            occurred_at: iso(row.occurred_at),
            event_type: row.event_type,
            event_id: row.event_id,
            stream: row.stream,
            detail: row.detail,
        }
    }
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
    ) -> Answer<AuditPage> {
        let (since, until) = time_window(since.0.as_deref(), until.0.as_deref())?;
        let filter = AuditFilter {
            after: after.0.unwrap_or(0),
            kind: kind.0,
            actor: actor.0,
            repository: repository.0,
            since,
            until,
        };
        let page = audit_log::list(&state.db, filter, limit_of(limit.0)).await?;
        ok(AuditPage { items: page.items.into_iter().map(AuditEntry::from).collect(), next_cursor: page.next_cursor })
    }
}
