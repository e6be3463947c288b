use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::{Enum, Object, OpenApi, Tags};

use super::{iso, limit_of, ok, time_window, Answer, ApiAuth};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::events::TriggerKind;
use crate::projections::conversations::{self, ConversationFilter, ConversationRow};

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
    /// What asked, as the events spell it: `label`, `issue_comment`, `pr_comment`, `review_comment`, `failed_workflow`.
    pub kind: Option<String>,
    pub repository: Option<String>,
    /// The issue or pull request number.
    pub number: Option<u64>,
    /// Who asked.
    pub requester: Option<String>,
    /// The delivery that caused it.
    pub delivery_id: Option<String>,
    /// `detected`, `rejected`, `starting`, `running`, `finished`, `failed`, `abandoned` or `stopped`.
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
    /// The comment hookwise keeps up to date where the request was made
    /// ("I'm on it", edited to the result with `HOOKWISE_REPLY_STYLE=edit`).
    pub status_comment_id: Option<u64>,
    pub status_comment_url: Option<String>,
    /// When hookwise said where it was asked that it gave up (while abandoned).
    pub abandonment_reported_at: Option<String>,
    /// How many requests on the same issue or pull request are ahead of this
    /// one (1: it starts when the running one ends; `HOOKWISE_PER_THREAD=queue`).
    /// Absent when it does not wait.
    pub queue_position: Option<u64>,
    /// Who stopped its run with a `{handle} stop` comment, and when.
    pub stopped_by: Option<String>,
    pub stopped_at: Option<String>,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    pub next_cursor: Option<u64>,
}

/// What asked for the agent: the trigger kinds as the events spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ConversationKind {
    /// The trigger label was put on an issue.
    Label,
    /// A mention in a comment on an issue.
    IssueComment,
    /// A mention in a comment on a pull request's conversation.
    PrComment,
    /// A mention in an inline review comment.
    ReviewComment,
    /// A workflow run failed on a pull request's head (proactive starters).
    FailedWorkflow,
    /// A mention in the body of a submitted pull request review.
    PrReview,
    /// The trigger label was put on a pull request.
    PrLabel,
    /// An issue was assigned to the App's bot user.
    IssueAssigned,
    /// A pull request was assigned to the App's bot user.
    PrAssigned,
    /// A comment on an issue, edited to mention the handle.
    EditedIssueComment,
    /// A comment on a pull request's conversation, edited to mention the handle.
    EditedPrComment,
    /// An inline review comment, edited to mention the handle.
    EditedReviewComment,
}

impl From<ConversationKind> for TriggerKind {
    fn from(kind: ConversationKind) -> Self {
        match kind {
            ConversationKind::Label => TriggerKind::Label,
            ConversationKind::IssueComment => TriggerKind::IssueComment,
            ConversationKind::PrComment => TriggerKind::PrComment,
            ConversationKind::ReviewComment => TriggerKind::ReviewComment,
            ConversationKind::FailedWorkflow => TriggerKind::FailedWorkflow,
            ConversationKind::PrReview => TriggerKind::PrReview,
            ConversationKind::PrLabel => TriggerKind::PrLabel,
            ConversationKind::IssueAssigned => TriggerKind::IssueAssigned,
            ConversationKind::PrAssigned => TriggerKind::PrAssigned,
            ConversationKind::EditedIssueComment => TriggerKind::EditedIssueComment,
            ConversationKind::EditedPrComment => TriggerKind::EditedPrComment,
            ConversationKind::EditedReviewComment => TriggerKind::EditedReviewComment,
        }
    }
}

impl From<ConversationRow> for Conversation {
    fn from(row: ConversationRow) -> Self {
        let detected = row.detected_at;
        let acknowledged = row.acknowledged_at;
        Conversation {
            trigger_id: row.trigger_id,
            position: row.position,
            kind: row.kind,
            repository: row.repository,
            number: row.number,
            requester: row.requester,
            delivery_id: row.delivery_id,
            status: row.status,
            reason: row.reason,
            conversation_id: row.conversation_id,
            conversation_url: row.conversation_url,
            detected_at: iso(detected),
            permission_checked_at: row.permission_checked_at.map(iso),
            reacted_at: row.reacted_at.map(iso),
            requested_at: row.requested_at.map(iso),
            started_at: row.started_at.map(iso),
            acknowledged_at: acknowledged.map(iso),
            summary_posted_at: row.summary_posted_at.map(iso),
            finished_at: row.finished_at.map(iso),
            failed_at: row.failed_at.map(iso),
            abandoned_at: row.abandoned_at.map(iso),
            last_error: row.last_error,
            retries: row.retries,
            time_to_acknowledgement_ms: acknowledged.map(|a| u64::try_from((a - detected) / 1000).unwrap_or(0)),
            status_comment_id: row.status_comment_id,
            status_comment_url: row.status_comment_url,
            abandonment_reported_at: row.abandonment_reported_at.map(iso),
            queue_position: row.queue_position,
            stopped_by: row.stopped_by,
            stopped_at: row.stopped_at.map(iso),
        }
    }
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
        /// `detected`, `rejected`, `starting`, `running`, `finished`, `failed`, `abandoned` or `stopped`.
        status: Query<Option<String>>,
        /// What asked: `label`, `issue_comment`, `pr_comment`, `review_comment` or `failed_workflow`.
        kind: Query<Option<ConversationKind>>,
        /// Who asked.
        sender: Query<Option<String>>,
        /// Detected at or after (RFC 3339).
        since: Query<Option<String>>,
        /// Detected before (RFC 3339).
        until: Query<Option<String>>,
    ) -> Answer<ConversationPage> {
        let (since, until) = time_window(since.0.as_deref(), until.0.as_deref())?;
        let filter = ConversationFilter {
            after: after.0.unwrap_or(0),
            repository: repository.0,
            status: status.0,
            kind: kind.0.map(|kind| TriggerKind::from(kind).as_str().to_owned()),
            requester: sender.0,
            since,
            until,
        };
        let page = conversations::list(&state.db, filter, limit_of(limit.0)).await?;
        ok(ConversationPage {
            items: page.items.into_iter().map(Conversation::from).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// One trigger and its conversation.
    #[oai(path = "/conversations/:trigger_id", method = "get", operation_id = "get_conversation")]
    async fn get(&self, state: Data<&AppState>, _auth: ApiAuth, trigger_id: Path<String>) -> Answer<Conversation> {
        match conversations::get(&state.db, &trigger_id.0).await? {
            Some(row) => ok(row.into()),
            None => Err(ApiError::not_found(format!("no trigger {}", trigger_id.0))),
        }
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;

    #[test]
    fn the_api_spells_the_kinds_as_the_events_do() {
        use ConversationKind::*;
        for kind in [
            Label,
            IssueComment,
            PrComment,
            ReviewComment,
            FailedWorkflow,
            PrReview,
            PrLabel,
            IssueAssigned,
            PrAssigned,
            EditedIssueComment,
            EditedPrComment,
            EditedReviewComment,
        ] {
            let event = serde_json::to_value(TriggerKind::from(kind)).ok();
            assert_eq!(kind.to_json(), event);
            assert_eq!(kind.to_json(), Some(serde_json::Value::from(TriggerKind::from(kind).as_str())));
        }
    }
}
