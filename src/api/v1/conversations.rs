use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

use super::{fetch_page, iso, limit_of, time_range, ApiAuth, ApiResult, Filter};
use crate::api::AppState;
use crate::sql::{SqlError, SqlRow};
use crate::sql_params;

#[derive(Tags)]
enum Tag {
    /// One entry per trigger: what asked for the agent, and what became of it.
    Conversations,
}

/// A trigger and the agent conversation it led to.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Conversation {
    pub trigger_id: String,
    /// Log position of its `TriggerDetected`; the pagination cursor.
    pub position: u64,
    /// What asked: e.g. `issue_label`, `issue_comment`, `pr_comment`, `review_comment`, `workflow_failure`.
    pub kind: Option<String>,
    pub repository: Option<String>,
    /// The issue or pull request number.
    pub number: Option<u64>,
    /// Who asked.
    pub requester: Option<String>,
    /// The delivery that caused it.
    pub delivery_id: Option<String>,
    /// `detected`, `rejected`, `starting`, `running`, `finished`, `failed` or `abandoned`.
    pub status: String,
    /// Why it was rejected, failed or abandoned.
    pub reason: Option<String>,
    pub conversation_id: Option<String>,
    /// Where to follow the agent's work.
    pub conversation_url: Option<String>,
    pub detected_at: String,
    pub permission_checked_at: Option<String>,
    pub reacted_at: Option<String>,
    pub requested_at: Option<String>,
    pub started_at: Option<String>,
    pub acknowledged_at: Option<String>,
    pub summary_posted_at: Option<String>,
    pub finished_at: Option<String>,
    pub failed_at: Option<String>,
    pub abandoned_at: Option<String>,
    /// The last failed step's error.
    pub last_error: Option<String>,
    pub retries: u64,
    /// From detection to the acknowledgement comment, in milliseconds.
    pub time_to_acknowledgement_ms: Option<u64>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    pub next_cursor: Option<u64>,
}

pub(super) const COLUMNS: &str = "trigger_id, position, kind, repository, number, requester, delivery_id, status,
    reason, conversation_id, conversation_url, detected_at, permission_checked_at, reacted_at, requested_at,
    started_at, acknowledged_at, summary_posted_at, finished_at, failed_at, abandoned_at, last_error, retries";

fn time(row: &SqlRow, i: usize) -> Result<Option<String>, SqlError> {
    Ok(row.get::<Option<i64>>(i)?.map(iso))
}

pub(super) fn conversation(row: &SqlRow) -> Result<Conversation, SqlError> {
    let detected: i64 = row.get(11)?;
    let acknowledged: Option<i64> = row.get(16)?;
    Ok(Conversation {
        trigger_id: row.get(0)?,
        position: row.get(1)?,
        kind: row.get(2)?,
        repository: row.get(3)?,
        number: row.get(4)?,
        requester: row.get(5)?,
        delivery_id: row.get(6)?,
        status: row.get(7)?,
        reason: row.get(8)?,
        conversation_id: row.get(9)?,
        conversation_url: row.get(10)?,
        detected_at: iso(detected),
        permission_checked_at: time(row, 12)?,
        reacted_at: time(row, 13)?,
        requested_at: time(row, 14)?,
        started_at: time(row, 15)?,
        acknowledged_at: acknowledged.map(iso),
        summary_posted_at: time(row, 17)?,
        finished_at: time(row, 18)?,
        failed_at: time(row, 19)?,
        abandoned_at: time(row, 20)?,
        last_error: row.get(21)?,
        retries: row.get(22)?,
        time_to_acknowledgement_ms: acknowledged.map(|a| u64::try_from((a - detected) / 1000).unwrap_or(0)),
    })
}

pub struct ConversationsApi;

#[OpenApi(tag = "Tag::Conversations")]
impl ConversationsApi {
    /// List triggers and their conversations, oldest first.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/conversations", method = "get", operation_id = "list_conversations")]
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
        /// `detected`, `rejected`, `starting`, `running`, `finished`, `failed` or `abandoned`.
        status: Query<Option<String>>,
        kind: Query<Option<String>>,
        /// Who asked.
        sender: Query<Option<String>>,
        /// Detected at or after (RFC 3339).
        since: Query<Option<String>>,
        /// Detected before (RFC 3339).
        until: Query<Option<String>>,
    ) -> ApiResult<ConversationPage> {
        let limit = limit_of(limit.0);
        let mut filter = Filter::default();
        filter.and("position > ?", after.0.unwrap_or(0));
        filter.and_some("repository = ?", repository.0);
        filter.and_some("status = ?", status.0);
        filter.and_some("kind = ?", kind.0);
        filter.and_some("requester = ?", sender.0);
        if let Err(e) = time_range(&mut filter, "detected_at", since.0.as_deref(), until.0.as_deref()) {
            return e;
        }
        let sql = format!("SELECT {COLUMNS} FROM conversations{} ORDER BY position LIMIT {limit}", filter.sql());
        match fetch_page(&state.db, &sql, filter.params, limit, conversation, |item| item.position).await {
            Ok((items, next_cursor)) => ApiResult::Ok(Json(ConversationPage { items, next_cursor })),
            Err(e) => e.into(),
        }
    }

    /// One trigger and its conversation.
    #[oai(path = "/conversations/:trigger_id", method = "get", operation_id = "get_conversation")]
    async fn get(&self, state: Data<&AppState>, _auth: ApiAuth, trigger_id: Path<String>) -> ApiResult<Conversation> {
        let sql = format!("SELECT {COLUMNS} FROM conversations WHERE trigger_id = ?");
        let rows = match state.db.query(&sql, sql_params![trigger_id.0.as_str()]).await {
            Ok(rows) => rows,
            Err(e) => return e.into(),
        };
        match rows.first().map(conversation) {
            Some(Ok(item)) => ApiResult::Ok(Json(item)),
            Some(Err(e)) => e.into(),
            None => ApiResult::not_found(format!("no trigger {}", trigger_id.0)),
        }
    }
}
