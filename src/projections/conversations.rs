//! `conversations`: one row per trigger (stream `trigger-{id}`), following it
//! from detection to its end: kind, where, who asked, status, why, the agent
//! conversation, and when each step happened.
//!
//! It matches on the typed [`TriggerEvent`] (decoded through the
//! catalogue's upcasting) and moves `status` by the lifecycle's own
//! [`StatusChange`], so the status here is the one `triggers::status` gives.

use super::query::{fetch_page, Filter, Page};
use super::read_model::{ReadModel, Tables};
use crate::events::streams;
use crate::runner::HandlerError;
use crate::sql::{SqlDb, SqlError, SqlRow, SqlValue, Statement};
use crate::sql_params;
use crate::store::RecordedEvent;
use crate::triggers::thread::ThreadEvent;
use crate::triggers::{AgentOutcome, StatusChange, TriggerEvent};

pub struct Conversations;

pub const STATUSES: &[&str] =
    &["detected", "rejected", "starting", "running", "finished", "failed", "abandoned", "stopped"];

const TABLES: &[&str] = &["conversations"];

const CREATE_TABLES: &[&str] = &["CREATE TABLE IF NOT EXISTS {p}conversations (
    trigger_id TEXT PRIMARY KEY,
    position BIGINT NOT NULL UNIQUE,
    kind TEXT,
    repository TEXT,
    number BIGINT,
    requester TEXT,
    delivery_id TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    conversation_id TEXT,
    conversation_url TEXT,
    detected_at BIGINT NOT NULL,
    permission_checked_at BIGINT,
    reacted_at BIGINT,
    requested_at BIGINT,
    started_at BIGINT,
    acknowledged_at BIGINT,
    summary_posted_at BIGINT,
    finished_at BIGINT,
    failed_at BIGINT,
    abandoned_at BIGINT,
    last_error TEXT,
    retries BIGINT NOT NULL DEFAULT 0,
    status_comment_id BIGINT,
    status_comment_url TEXT,
    abandonment_reported_at BIGINT,
    updated_at BIGINT NOT NULL,
    last_position BIGINT NOT NULL,
    thread TEXT,
    queued_at BIGINT,
    queued_order BIGINT,
    released_at BIGINT,
    stopped_by TEXT,
    stopped_at BIGINT
)"];

const CREATE_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS {p}conversations_by_repository ON {p}conversations (repository, position)",
    "CREATE INDEX IF NOT EXISTS {p}conversations_by_status ON {p}conversations (status, position)",
    "CREATE INDEX IF NOT EXISTS {p}conversations_by_detected_at ON {p}conversations (detected_at)",
    "CREATE INDEX IF NOT EXISTS {p}conversations_by_thread ON {p}conversations (thread, queued_order)",
];

/// The trigger id of an event on a `trigger-{id}` stream.
pub(super) fn trigger_id(event: &RecordedEvent) -> Option<&str> {
    event.stream.strip_prefix(streams::TRIGGER_PREFIX)
}

impl ReadModel for Conversations {
    /// Everything it records is in the events' data.
    fn reads_payloads(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "conversations"
    }

    fn schema_version(&self) -> i64 {
        // 2: typed events and the lifecycle's status rule (a retry resumes the status it had).
        // 3: the status comment, the abandonment's report, the line of each issue
        // or pull request (`HOOKWISE_PER_THREAD`), and stops.
        3
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn create_tables(&self) -> &'static [&'static str] {
        CREATE_TABLES
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        CREATE_INDEXES
    }

    fn apply(&self, t: &Tables, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        if event.stream.starts_with(streams::THREAD_PREFIX) {
            return Ok(thread_event(t, event)?.into_iter().collect());
        }
        let Some(trigger) = trigger_id(event) else {
            return Ok(vec![]);
        };
        let Some(typed) = TriggerEvent::decode(event).map_err(|e| HandlerError::decode(event, e))? else {
            return Ok(vec![]);
        };
        let at = event.recorded_at_micros;
        let (set, params): (&str, Vec<SqlValue>) = match &typed {
            TriggerEvent::TriggerDetected(detected) => {
                return Ok(vec![Statement::new(
                    t.sql(
                        "INSERT INTO {p}conversations (trigger_id, position, kind, repository, number, requester,
                            delivery_id, status, detected_at, updated_at, last_position)
                         VALUES (?, ?, ?, ?, ?, ?, ?, 'detected', ?, ?, ?)
                         ON CONFLICT (trigger_id) DO NOTHING",
                    ),
                    sql_params![
                        trigger,
                        event.position.0,
                        detected.kind.as_str(),
                        detected.repository.full_name.as_str(),
                        detected.number,
                        detected.requester.login.as_str(),
                        detected.delivery_id.as_deref().or_else(|| legacy_delivery_id(&detected.delivery_stream)),
                        at,
                        at,
                        event.position.0
                    ],
                )]);
            }
            TriggerEvent::PermissionChecked(checked) if !checked.granted => {
                ("reason = ?, permission_checked_at = ?", sql_params![format!("permission {}", checked.permission), at])
            }
            TriggerEvent::PermissionChecked(_) => ("permission_checked_at = ?", sql_params![at]),
            TriggerEvent::TriggerRejected(rejected) => ("reason = ?", sql_params![rejected.reason.as_str()]),
            TriggerEvent::ReactionAdded(_) => ("reacted_at = ?", sql_params![at]),
            TriggerEvent::ConversationRequested(_) => ("requested_at = ?", sql_params![at]),
            TriggerEvent::ConversationStarted(started) => (
                "started_at = ?, conversation_id = ?, conversation_url = ?",
                sql_params![at, started.conversation_id.as_str(), started.conversation_url.as_str()],
            ),
            TriggerEvent::AcknowledgementPosted(posted) => (
                "acknowledged_at = COALESCE(acknowledged_at, ?), status_comment_id = ?, status_comment_url = ?",
                sql_params![at, posted.comment_id, posted.comment_url.clone()],
            ),
            TriggerEvent::AbandonmentReported(_) => ("abandonment_reported_at = ?", sql_params![at]),
            TriggerEvent::ConversationStatusChanged(changed) => match AgentOutcome::of(&changed.agent_state) {
                AgentOutcome::Finished => ("finished_at = COALESCE(finished_at, ?)", sql_params![at]),
                AgentOutcome::Failed => (
                    "failed_at = COALESCE(failed_at, ?), reason = COALESCE(?, reason)",
                    sql_params![at, changed.reason.clone().unwrap_or_else(|| changed.agent_state.clone())],
                ),
                AgentOutcome::Running => ("", vec![]),
                AgentOutcome::Unknown => return Ok(vec![]),
            },
            TriggerEvent::SummaryPosted(posted) => match AgentOutcome::of(&posted.outcome) {
                AgentOutcome::Failed => (
                    "summary_posted_at = ?, failed_at = COALESCE(failed_at, ?), reason = COALESCE(reason, ?)",
                    sql_params![at, at, posted.outcome.as_str()],
                ),
                _ => (
                    "summary_posted_at = ?, finished_at = CASE WHEN status IN ('running', 'starting', 'detected')
                        THEN COALESCE(finished_at, ?) ELSE finished_at END",
                    sql_params![at, at],
                ),
            },
            TriggerEvent::StepFailed(failed) => ("last_error = ?", sql_params![failed.error.as_str()]),
            TriggerEvent::TriggerAbandoned(abandoned) => {
                ("abandoned_at = ?, reason = ?", sql_params![at, abandoned.error.as_str()])
            }
            TriggerEvent::TriggerRetried(_) => {
                ("reason = NULL, abandoned_at = NULL, abandonment_reported_at = NULL, retries = retries + 1", vec![])
            }
            TriggerEvent::QueuedNoticePosted(_) => ("", vec![]),
            TriggerEvent::ConversationStopped(stopped) => (
                "stopped_by = COALESCE(stopped_by, ?), stopped_at = COALESCE(stopped_at, ?)",
                sql_params![stopped.stopped_by.as_str(), at],
            ),
        };
        // The status moves by the lifecycle's one rule (see `triggers::StatusChange`).
        let status = StatusChange::of(&typed).sql().map(|expression| format!("status = {expression}"));
        let set = [Some(set.to_owned()).filter(|s| !s.is_empty()), status].into_iter().flatten().collect::<Vec<_>>();
        if set.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![update(t, trigger, event, &set.join(", "), params)])
    }
}

/// A trigger joined or left its thread's line: where it stands in it is
/// counted when it is read (`queue_position`, until it asks for its conversation).
fn thread_event(t: &Tables, event: &RecordedEvent) -> Result<Option<Statement>, HandlerError> {
    let at = event.recorded_at_micros;
    Ok(match ThreadEvent::decode(event).map_err(|e| HandlerError::decode(event, e))? {
        Some(ThreadEvent::Queued(queued)) => Some(update(
            t,
            &queued.trigger_id.to_string(),
            event,
            "thread = ?, queued_at = ?, queued_order = ?, released_at = NULL",
            sql_params![event.stream.as_str(), at, event.position.0],
        )),
        Some(ThreadEvent::Released(released)) => {
            Some(update(t, &released.trigger_id.to_string(), event, "released_at = ?", sql_params![at]))
        }
        None => None,
    })
}

/// The delivery id in the stream name a `TriggerDetected` written before it
/// carried `delivery_id` names: `delivery-{hook}-{id}`.
fn legacy_delivery_id(stream: &str) -> Option<&str> {
    stream.strip_prefix("delivery-").and_then(|rest| rest.split_once('-')).map(|(_, id)| id)
}

/// `UPDATE … SET {set}` of the trigger's row; applying an event again sets the
/// same values (except `retries`, which counts each `TriggerRetried` once: it
/// only moves when the event is newer than the row's last).
fn update(t: &Tables, trigger: &str, event: &RecordedEvent, set: &str, mut params: Vec<SqlValue>) -> Statement {
    let template = format!(
        "UPDATE {{p}}conversations SET {set}, updated_at = ?, last_position = ? WHERE trigger_id = ? AND last_position < ?"
    );
    params.extend(sql_params![event.recorded_at_micros, event.position.0, trigger, event.position.0]);
    Statement::new(template.replace("{p}", t.prefix()), params)
}

// Queries.

/// One row of `conversations`; every `_at` is in microseconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub trigger_id: String,
    /// Log position of its `TriggerDetected`.
    pub position: u64,
    /// The `TriggerKind` as its event spells it (`label`, `issue_comment`, …).
    pub kind: Option<String>,
    pub repository: Option<String>,
    pub number: Option<u64>,
    pub requester: Option<String>,
    pub delivery_id: Option<String>,
    /// One of [`STATUSES`].
    pub status: String,
    pub reason: Option<String>,
    pub conversation_id: Option<String>,
    pub conversation_url: Option<String>,
    pub detected_at: i64,
    pub permission_checked_at: Option<i64>,
    pub reacted_at: Option<i64>,
    pub requested_at: Option<i64>,
    pub started_at: Option<i64>,
    pub acknowledged_at: Option<i64>,
    pub summary_posted_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub abandoned_at: Option<i64>,
    pub last_error: Option<String>,
    pub retries: u64,
    /// The comment hookwise keeps up to date where the request was made (the acknowledgement).
    pub status_comment_id: Option<u64>,
    pub status_comment_url: Option<String>,
    /// When hookwise said there that it gave up (while abandoned).
    pub abandonment_reported_at: Option<i64>,
    /// How many requests on the same issue or pull request are ahead of it
    /// (1: it starts when the running one ends); `None` when it does not wait.
    pub queue_position: Option<u64>,
    /// Who stopped its run (`{handle} stop`), and when.
    pub stopped_by: Option<String>,
    pub stopped_at: Option<i64>,
}

const COLUMNS: &str = "trigger_id, position, kind, repository, number, requester, delivery_id, status,
    reason, conversation_id, conversation_url, detected_at, permission_checked_at, reacted_at, requested_at,
    started_at, acknowledged_at, summary_posted_at, finished_at, failed_at, abandoned_at, last_error, retries,
    status_comment_id, status_comment_url, abandonment_reported_at,
    stopped_by, stopped_at,
    CASE WHEN queued_order IS NULL OR released_at IS NOT NULL OR requested_at IS NOT NULL THEN NULL
        ELSE NULLIF((SELECT COUNT(*) FROM conversations AS ahead WHERE ahead.thread = conversations.thread
            AND ahead.queued_order < conversations.queued_order AND ahead.released_at IS NULL), 0)
    END AS queue_position";

impl ConversationRow {
    fn from_row(row: &SqlRow) -> Result<Self, SqlError> {
        Ok(ConversationRow {
            trigger_id: row.get_by_name("trigger_id")?,
            position: row.get_by_name("position")?,
            kind: row.get_by_name("kind")?,
            repository: row.get_by_name("repository")?,
            number: row.get_by_name("number")?,
            requester: row.get_by_name("requester")?,
            delivery_id: row.get_by_name("delivery_id")?,
            status: row.get_by_name("status")?,
            reason: row.get_by_name("reason")?,
            conversation_id: row.get_by_name("conversation_id")?,
            conversation_url: row.get_by_name("conversation_url")?,
            detected_at: row.get_by_name("detected_at")?,
            permission_checked_at: row.get_by_name("permission_checked_at")?,
            reacted_at: row.get_by_name("reacted_at")?,
            requested_at: row.get_by_name("requested_at")?,
            started_at: row.get_by_name("started_at")?,
            acknowledged_at: row.get_by_name("acknowledged_at")?,
            summary_posted_at: row.get_by_name("summary_posted_at")?,
            finished_at: row.get_by_name("finished_at")?,
            failed_at: row.get_by_name("failed_at")?,
            abandoned_at: row.get_by_name("abandoned_at")?,
            last_error: row.get_by_name("last_error")?,
            retries: row.get_by_name("retries")?,
            status_comment_id: row.get_by_name("status_comment_id")?,
            status_comment_url: row.get_by_name("status_comment_url")?,
            abandonment_reported_at: row.get_by_name("abandonment_reported_at")?,
            queue_position: row.get_by_name("queue_position")?,
            stopped_by: row.get_by_name("stopped_by")?,
            stopped_at: row.get_by_name("stopped_at")?,
        })
    }
}

/// Which conversations a [`list`] returns; `since`/`until` bound `detected_at`.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    /// Only rows after this position (the cursor).
    pub after: u64,
    pub repository: Option<String>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub requester: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// A page of conversations in log order.
pub async fn list(db: &SqlDb, f: ConversationFilter, limit: u32) -> Result<Page<ConversationRow>, SqlError> {
    let mut filter = Filter::default();
    filter.and("position > ?", f.after);
    filter.and_some("repository = ?", f.repository);
    filter.and_some("status = ?", f.status);
    filter.and_some("kind = ?", f.kind);
    filter.and_some("requester = ?", f.requester);
    filter.time_range("detected_at", f.since, f.until);
    let sql = format!("SELECT {COLUMNS} FROM conversations{} ORDER BY position LIMIT {limit}", filter.sql());
    fetch_page(db, &sql, filter.params, limit, ConversationRow::from_row, |row| row.position).await
}

/// The conversation of trigger `trigger_id`.
pub async fn get(db: &SqlDb, trigger_id: &str) -> Result<Option<ConversationRow>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM conversations WHERE trigger_id = ?");
    db.query(&sql, sql_params![trigger_id]).await?.first().map(ConversationRow::from_row).transpose()
}

/// How many triggers of one kind (`unknown` when it has none) are in one status.
#[derive(Debug, Clone, PartialEq)]
pub struct KindStatusCount {
    pub kind: String,
    pub status: String,
    pub count: u64,
}

/// The triggers of `repository` (all when `None`) detected in `[since, until)`.
fn triggers_detected(repository: Option<String>, since: Option<i64>, until: Option<i64>) -> Filter {
    let mut filter = Filter::default();
    filter.and_some("repository = ?", repository);
    filter.time_range("detected_at", since, until);
    filter
}

/// Triggers by kind and status, ordered by both.
pub async fn count_by_kind_and_status(
    db: &SqlDb,
    repository: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<KindStatusCount>, SqlError> {
    let filter = triggers_detected(repository, since, until);
    let sql = format!(
        "SELECT COALESCE(kind, 'unknown') AS kind, status, COUNT(*) AS count FROM conversations{}
         GROUP BY COALESCE(kind, 'unknown'), status ORDER BY 1, 2",
        filter.sql()
    );
    db.query(&sql, filter.params)
        .await?
        .iter()
        .map(|row| {
            Ok(KindStatusCount {
                kind: row.get_by_name("kind")?,
                status: row.get_by_name("status")?,
                count: row.get_by_name("count")?,
            })
        })
        .collect()
}

/// From detection to the acknowledgement comment (microseconds), per acknowledged trigger.
pub async fn acknowledgement_waits(
    db: &SqlDb,
    repository: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<i64>, SqlError> {
    let filter = triggers_detected(repository, since, until);
    let where_sql = filter.sql();
    let sql = format!(
        "SELECT acknowledged_at - detected_at AS wait FROM conversations{where_sql}{} acknowledged_at IS NOT NULL",
        if where_sql.is_empty() { " WHERE" } else { " AND" }
    );
    db.query(&sql, filter.params).await?.iter().map(|row| row.get_by_name("wait")).collect()
}

#[cfg(test)]
mod tests {
    use super::legacy_delivery_id;

    #[test]
    fn the_old_stream_name_gives_the_guid_after_the_hook_id() {
        assert_eq!(
            legacy_delivery_id("delivery-42-72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(legacy_delivery_id("delivery-0-d"), Some("d"));
        assert_eq!(legacy_delivery_id("trigger-x"), None);
    }
}
