//! `audit_log`: one row per meaningful fact, with who did it, to what, when,
//! and the event it came from.

use serde_json::Value;

use super::read_model::{ReadModel, Tables};
use super::time_ranges::{self, time_ranges_table, time_ranges_upsert};
use crate::events::{DomainEvent, WebhookReceived};
use crate::runner::HandlerError;
use crate::sql::Statement;
use crate::sql_params;
use crate::store::RecordedEvent;

pub struct AuditLog;

const TABLES: &[&str] = &["audit_log", "audit_triggers", "audit_log_time_ranges"];

/// The audit rows' times per block of positions (see [`time_ranges`]).
pub const TIME_RANGES: &str = "audit_log_time_ranges";
const TIME_RANGES_UPSERT: &str = time_ranges_upsert!("audit_log_time_ranges");

const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {p}audit_log (
    position BIGINT PRIMARY KEY,
    kind TEXT NOT NULL,
    actor TEXT,
    target TEXT,
    repository TEXT,
    occurred_at BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    detail TEXT
)",
    // Who asked and where, per trigger: later events of the trigger name neither.
    "CREATE TABLE IF NOT EXISTS {p}audit_triggers (
    trigger_id TEXT PRIMARY KEY,
    actor TEXT,
    target TEXT,
    repository TEXT
)",
    time_ranges_table!("audit_log_time_ranges"),
];

const CREATE_INDEXES: &[&str] = &[
    // Each filter walks its rows in page order; the time is in the index so
    // that a time window is checked there, without reading rows it excludes.
    "CREATE INDEX IF NOT EXISTS {p}audit_log_by_kind ON {p}audit_log (kind, position, occurred_at)",
    "CREATE INDEX IF NOT EXISTS {p}audit_log_by_actor ON {p}audit_log (actor, position, occurred_at)",
    "CREATE INDEX IF NOT EXISTS {p}audit_log_by_repository ON {p}audit_log (repository, position, occurred_at)",
    "CREATE INDEX IF NOT EXISTS {p}audit_log_by_occurred_at ON {p}audit_log (occurred_at)",
];

/// One audit row.
#[derive(Debug, Default)]
pub struct Fact {
    pub kind: &'static str,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub repository: Option<String>,
    pub detail: Option<String>,
}

impl ReadModel for AuditLog {
    /// Everything it records is in the events' data.
    fn reads_payloads(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "audit_log"
    }

    fn schema_version(&self) -> i64 {
        // 3: the filter indexes carry the time; 4: time ranges per block of positions.
        4
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
        let Some(fact) = fact_of(event) else {
            return Ok(vec![]);
        };
        let trigger = event.stream.strip_prefix("trigger-");
        let mut statements = Vec::with_capacity(3);
        statements.push(time_ranges::record(t, TIME_RANGES_UPSERT, event.position, event.recorded_at_micros));
        if let (Some(trigger), "TriggerDetected") = (trigger, event.event_type.as_str()) {
            statements.push(Statement::new(
                t.sql(
                    "INSERT INTO {p}audit_triggers (trigger_id, actor, target, repository) VALUES (?, ?, ?, ?)
                     ON CONFLICT (trigger_id) DO NOTHING",
                ),
                sql_params![trigger, fact.actor.clone(), fact.target.clone(), fact.repository.clone()],
            ));
        }
        let Some(trigger) = trigger else {
            statements.push(Statement::new(
                t.sql(
                    "INSERT INTO {p}audit_log (position, kind, actor, target, repository, occurred_at, event_type,
                        event_id, stream, detail)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (position) DO NOTHING",
                ),
                sql_params![
                    event.position.0,
                    fact.kind,
                    fact.actor,
                    fact.target,
                    fact.repository,
                    event.recorded_at_micros,
                    event.event_type.as_str(),
                    event.event_id.to_string(),
                    event.stream.as_str(),
                    fact.detail
                ],
            ));
            return Ok(statements);
        };
        // A trigger's later events: what they do not say, the trigger's detection did.
        statements.push(Statement::new(
            t.sql(
                "INSERT INTO {p}audit_log (position, kind, actor, target, repository, occurred_at, event_type,
                    event_id, stream, detail)
                 SELECT CAST(? AS BIGINT), CAST(? AS TEXT), COALESCE(CAST(? AS TEXT), tr.actor),
                    COALESCE(CAST(? AS TEXT), tr.target), COALESCE(CAST(? AS TEXT), tr.repository),
                    CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT)
                 FROM (SELECT 1 AS one) AS base LEFT JOIN {p}audit_triggers tr ON tr.trigger_id = ?
                 WHERE 1 = 1
                 ON CONFLICT (position) DO NOTHING",
            ),
            sql_params![
                event.position.0,
                fact.kind,
                fact.actor,
                fact.target,
                fact.repository,
                event.recorded_at_micros,
                event.event_type.as_str(),
                event.event_id.to_string(),
                event.stream.as_str(),
                fact.detail,
                trigger
            ],
        ));
        Ok(statements)
    }
}

/// The fact an event records, if it is one worth auditing.
fn fact_of(event: &RecordedEvent) -> Option<Fact> {
    if event.event_type == WebhookReceived::TYPE {
        let d = WebhookReceived::decode(event).ok()?;
        let repository = d.repository.map(|r| r.full_name);
        return Some(Fact {
            kind: "delivery_accepted",
            actor: d.sender.map(|s| s.login),
            target: repository.clone(),
            repository,
            detail: Some(match d.action {
                Some(action) => format!("{}.{action} delivery {}", d.event, d.delivery_id),
                None => format!("{} delivery {}", d.event, d.delivery_id),
            }),
        });
    }
    let kind = kind_of(&event.event_type)?;
    let data: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
    Some(generic_fact(kind, &data))
}

/// The audited kinds among the trigger, conversation and admin events.
fn kind_of(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "TriggerDetected" => "trigger_detected",
        "PermissionChecked" => "permission_checked",
        "PermissionGranted" => "permission_granted",
        "PermissionDenied" => "permission_denied",
        "TriggerRejected" => "trigger_rejected",
        "ReactionAdded" => "reaction_added",
        "ConversationStarted" => "conversation_started",
        "AcknowledgementPosted" => "comment_posted",
        "CommentPosted" => "comment_posted",
        "SummaryPosted" => "summary_posted",
        "StepFailed" => "step_failed",
        "TriggerAbandoned" => "trigger_abandoned",
        "TriggerRetried" => "admin_action",
        "ReadModelRebuilt" => "admin_action",
        "ReadModelReplayed" => "admin_action",
        "DeliveryRetried" => "admin_action",
        _ => return None,
    })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => {
            ["full_name", "login", "name"].iter().find_map(|k| o.get(*k).and_then(Value::as_str)).map(str::to_owned)
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn first_of(data: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| data.get(*k).and_then(text))
}

/// Reads actor, target and detail from the usual field names of the catalogue's events.
fn generic_fact(kind: &'static str, data: &Value) -> Fact {
    let actor = first_of(data, &["requested_by", "requester", "actor", "sender", "login"]);
    let repository = first_of(data, &["repository", "repository_full_name", "repo"]);
    let number = data.get("number").or_else(|| data.get("issue_number")).and_then(Value::as_u64);
    let target = match (&repository, number) {
        (Some(repo), Some(n)) => Some(format!("{repo}#{n}")),
        (Some(repo), None) => Some(repo.clone()),
        (None, _) => first_of(data, &["read_model", "target"]),
    };
    let detail =
        first_of(data, &["reason", "error", "step", "kind", "permission", "outcome", "agent_state", "read_model"]);
    Fact { kind, actor, target, repository, detail }
}
