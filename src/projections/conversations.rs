//! `conversations`: one row per trigger (stream `trigger-{id}`), following it
//! from detection to its end: kind, where, who asked, status, why, the agent
//! conversation, and when each step happened.
//!
//! Fields are read by name from the catalogue's JSON (`kind`, `repository`,
//! `number`, `requester`, `reason`, `conversation_id`, `conversation_url`,
//! `status`/`agent_state`), so the projection does not break when an event
//! gains a field.

use serde_json::Value;

use super::read_model::{ReadModel, Tables};
use crate::runner::HandlerError;
use crate::sql::{SqlValue, Statement};
use crate::sql_params;
use crate::store::RecordedEvent;

pub struct Conversations;

pub const STATUSES: &[&str] = &["detected", "rejected", "starting", "running", "finished", "failed", "abandoned"];

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
    updated_at BIGINT NOT NULL,
    last_position BIGINT NOT NULL
)"];

const CREATE_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS {p}conversations_by_repository ON {p}conversations (repository, position)",
    "CREATE INDEX IF NOT EXISTS {p}conversations_by_status ON {p}conversations (status, position)",
    "CREATE INDEX IF NOT EXISTS {p}conversations_by_detected_at ON {p}conversations (detected_at)",
];

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => ["full_name", "login", "name", "id"].iter().find_map(|k| o.get(*k)).and_then(text),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn field(data: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| data.get(*k).and_then(text))
}

/// The trigger id of an event on a `trigger-{id}` stream.
pub(super) fn trigger_id(event: &RecordedEvent) -> Option<&str> {
    event.stream.strip_prefix("trigger-")
}

/// Where an agent state leaves the conversation.
fn status_of_agent_state(state: &str) -> Option<&'static str> {
    match state.to_ascii_lowercase().as_str() {
        "loading" | "running" | "paused" | "started" | "starting" => Some("running"),
        "finished" | "awaiting_user_input" | "stopped_with_summary" => Some("finished"),
        "error" | "rate_limited" | "stopped" | "rejected" | "failed" => Some("failed"),
        _ => None,
    }
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
        1
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
        let Some(trigger) = trigger_id(event) else {
            return Ok(vec![]);
        };
        let data: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
        let at = event.recorded_at_micros;
        let reason = field(&data, &["reason", "error", "message"]);
        let statement = match event.event_type.as_str() {
            "TriggerDetected" => Statement::new(
                t.sql(
                    "INSERT INTO {p}conversations (trigger_id, position, kind, repository, number, requester,
                        delivery_id, status, detected_at, updated_at, last_position)
                     VALUES (?, ?, ?, ?, ?, ?, ?, 'detected', ?, ?, ?)
                     ON CONFLICT (trigger_id) DO NOTHING",
                ),
                sql_params![
                    trigger,
                    event.position.0,
                    field(&data, &["kind", "trigger_kind"]),
                    field(&data, &["repository", "repository_full_name", "repo"]),
                    data.get("number").or_else(|| data.get("issue_number")).and_then(Value::as_u64),
                    field(&data, &["requester", "sender", "requested_by", "login"]),
                    field(&data, &["delivery_id", "delivery"]),
                    at,
                    at,
                    event.position.0
                ],
            ),
            "PermissionChecked" | "PermissionGranted" | "PermissionDenied" => {
                let denied = event.event_type == "PermissionDenied"
                    || data.get("granted").and_then(Value::as_bool) == Some(false)
                    || data.get("allowed").and_then(Value::as_bool) == Some(false);
                if denied {
                    update(
                        t,
                        trigger,
                        event,
                        "status = 'rejected', reason = ?, permission_checked_at = ?",
                        sql_params![
                            reason.or_else(|| field(&data, &["permission"]).map(|p| format!("permission {p}"))),
                            at
                        ],
                    )
                } else {
                    update(t, trigger, event, "permission_checked_at = ?", sql_params![at])
                }
            }
            "TriggerRejected" => update(t, trigger, event, "status = 'rejected', reason = ?", sql_params![reason]),
            "ReactionAdded" => update(t, trigger, event, "reacted_at = ?", sql_params![at]),
            "ConversationRequested" => update(
                t,
                trigger,
                event,
                "status = CASE WHEN status = 'detected' THEN 'starting' ELSE status END, requested_at = ?",
                sql_params![at],
            ),
            "ConversationStarted" => update(
                t,
                trigger,
                event,
                "status = CASE WHEN status IN ('detected', 'starting') THEN 'running' ELSE status END,
                 started_at = ?, conversation_id = COALESCE(?, conversation_id),
                 conversation_url = COALESCE(?, conversation_url)",
                sql_params![at, field(&data, &["conversation_id"]), field(&data, &["conversation_url", "url", "link"])],
            ),
            "AcknowledgementPosted" => {
                update(t, trigger, event, "acknowledged_at = COALESCE(acknowledged_at, ?)", sql_params![at])
            }
            "ConversationStatusChanged" => {
                let state = field(&data, &["agent_state", "status", "state"]).unwrap_or_default();
                match status_of_agent_state(&state) {
                    Some("finished") => update(
                        t,
                        trigger,
                        event,
                        "status = 'finished', finished_at = COALESCE(finished_at, ?)",
                        sql_params![at],
                    ),
                    Some("failed") => update(
                        t,
                        trigger,
                        event,
                        "status = 'failed', failed_at = COALESCE(failed_at, ?), reason = COALESCE(?, reason)",
                        sql_params![at, reason.or(Some(state))],
                    ),
                    Some(status) => update(t, trigger, event, "status = ?", sql_params![status]),
                    None => return Ok(vec![]),
                }
            }
            "SummaryPosted" => {
                // Its `outcome` is the agent state it reported (or `suggested`, or a rejection reason).
                let outcome = field(&data, &["outcome"]).unwrap_or_default();
                if status_of_agent_state(&outcome) == Some("failed") {
                    update(
                        t,
                        trigger,
                        event,
                        "summary_posted_at = ?, status = CASE WHEN status = 'rejected' THEN status ELSE 'failed' END,
                         failed_at = COALESCE(failed_at, ?), reason = COALESCE(reason, ?)",
                        sql_params![at, at, outcome],
                    )
                } else {
                    update(
                        t,
                        trigger,
                        event,
                        "summary_posted_at = ?, status = CASE WHEN status IN ('running', 'starting', 'detected')
                            THEN 'finished' ELSE status END,
                         finished_at = CASE WHEN status IN ('running', 'starting', 'detected')
                            THEN COALESCE(finished_at, ?) ELSE finished_at END",
                        sql_params![at, at],
                    )
                }
            }
            "StepFailed" => update(t, trigger, event, "last_error = ?", sql_params![reason]),
            "TriggerAbandoned" => update(
                t,
                trigger,
                event,
                "status = 'abandoned', abandoned_at = ?, reason = COALESCE(?, reason)",
                sql_params![at, reason],
            ),
            "TriggerRetried" => update(
                t,
                trigger,
                event,
                "status = 'detected', reason = NULL, abandoned_at = NULL, retries = retries + 1",
                vec![],
            ),
            _ => return Ok(vec![]),
        };
        Ok(vec![statement])
    }
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
