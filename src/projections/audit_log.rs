//! `audit_log`: one row per meaningful fact, with who did it, to what, when,
//! and the event it came from.

use super::query::{fetch_page, Filter, Page};
use super::read_model::{ReadModel, Tables};
use super::time_ranges::{self, time_ranges_table, time_ranges_upsert};
use crate::events::admin::{ReadModelRebuilt, ReadModelReplayed};
use crate::events::pull_request::{EnrichmentAbandoned, EnrichmentRetried};
use crate::events::{
    streams, DecodeError, DomainEvent, RepositorySettingsRead, StopAnswered, StopRequested, WebhookReceived,
};
use crate::process::ENRICH_PULL_REQUEST;
use crate::runner::HandlerError;
use crate::sql::{SqlDb, SqlError, SqlRow, Statement};
use crate::sql_params;
use crate::store::RecordedEvent;
use crate::triggers::TriggerEvent;

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
        // 3: the filter indexes carry the time; 4: time ranges per block of
        // positions; 5: typed events (details from the events' own fields);
        // 6: delivery streams renamed `delivery-{guid}` (docs/decisions/delivery-identity.md);
        // 7: invalid repository settings files.
        7
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
        let fact = fact_of(event).map_err(|e| HandlerError::decode(event, e))?;
        let Some(fact) = fact else {
            return Ok(vec![]);
        };
        let trigger = event.stream.strip_prefix(streams::TRIGGER_PREFIX);
        let mut statements = Vec::with_capacity(3);
        statements.push(time_ranges::record(t, TIME_RANGES_UPSERT, event.position, event.recorded_at_micros));
        if let (Some(trigger), "trigger_detected") = (trigger, fact.kind) {
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
fn fact_of(event: &RecordedEvent) -> Result<Option<Fact>, DecodeError> {
    Ok(match event.event_type.as_str() {
        WebhookReceived::TYPE => {
            let d = WebhookReceived::decode(event)?;
            let repository = d.repository.map(|r| r.full_name);
            Some(Fact {
                kind: "delivery_accepted",
                actor: d.sender.map(|s| s.login),
                target: repository.clone(),
                repository,
                detail: Some(match d.action {
                    Some(action) => format!("{}.{action} delivery {}", d.event, d.delivery_id),
                    None => format!("{} delivery {}", d.event, d.delivery_id),
                }),
            })
        }
        ReadModelRebuilt::TYPE => {
            let rebuilt = ReadModelRebuilt::decode(event)?;
            Some(admin_fact(rebuilt.requested_by, rebuilt.read_model))
        }
        ReadModelReplayed::TYPE => {
            let replayed = ReadModelReplayed::decode(event)?;
            Some(admin_fact(replayed.requested_by, replayed.read_model))
        }
        EnrichmentAbandoned::TYPE => {
            let abandoned = EnrichmentAbandoned::decode(event)?;
            Some(Fact { kind: "enrichment_abandoned", detail: Some(abandoned.error), ..Fact::default() })
        }
        EnrichmentRetried::TYPE => {
            let retried = EnrichmentRetried::decode(event)?;
            Some(Fact {
                kind: "admin_action",
                actor: Some(retried.requested_by),
                detail: Some(ENRICH_PULL_REQUEST.to_owned()),
                ..Fact::default()
            })
        }
        StopRequested::TYPE => {
            let request = StopRequested::decode(event)?.request;
            Some(Fact {
                kind: "stop_requested",
                actor: Some(request.requester.login),
                target: Some(format!("{}#{}", request.repository.full_name, request.number)),
                repository: Some(request.repository.full_name),
                detail: None,
            })
        }
        StopAnswered::TYPE => {
            let answered = StopAnswered::decode(event)?;
            Some(Fact { kind: "stop_answered", detail: Some(answered.outcome), ..Fact::default() })
        }
        // Only a file that cannot be used: the operator's defaults apply in its repository.
        RepositorySettingsRead::TYPE => {
            let read = RepositorySettingsRead::decode(event)?;
            read.problem.map(|problem| Fact {
                kind: "repository_settings_invalid",
                target: Some(format!(
                    "{}@{}",
                    crate::triggers::settings::SETTINGS_PATH,
                    read.blob_sha.unwrap_or_default()
                )),
                repository: Some(read.repository),
                detail: Some(problem),
                ..Fact::default()
            })
        }
        _ => TriggerEvent::decode(event)?.and_then(trigger_fact),
    })
}

fn admin_fact(requested_by: String, read_model: String) -> Fact {
    Fact {
        kind: "admin_action",
        actor: Some(requested_by),
        target: Some(read_model.clone()),
        repository: None,
        detail: Some(read_model),
    }
}

/// The audited trigger events. Who asked and where come from the trigger's
/// detection (`audit_triggers`) when an event does not say.
fn trigger_fact(event: TriggerEvent) -> Option<Fact> {
    let fact = |kind, detail| Fact { kind, detail, ..Fact::default() };
    Some(match event {
        TriggerEvent::TriggerDetected(detected) => Fact {
            kind: "trigger_detected",
            actor: Some(detected.requester.login),
            target: Some(format!("{}#{}", detected.repository.full_name, detected.number)),
            repository: Some(detected.repository.full_name),
            detail: Some(detected.kind.as_str().to_owned()),
        },
        TriggerEvent::PermissionChecked(checked) => Fact {
            kind: "permission_checked",
            actor: Some(checked.login),
            detail: Some(checked.permission),
            ..Fact::default()
        },
        TriggerEvent::TriggerRejected(rejected) => fact("trigger_rejected", Some(rejected.reason)),
        TriggerEvent::ReactionAdded(added) => fact("reaction_added", Some(added.target)),
        TriggerEvent::ConversationStarted(started) => fact("conversation_started", Some(started.conversation_id)),
        TriggerEvent::AcknowledgementPosted(_) | TriggerEvent::QueuedNoticePosted(_) => fact("comment_posted", None),
        TriggerEvent::SummaryPosted(posted) => fact("summary_posted", Some(posted.outcome)),
        TriggerEvent::StepFailed(failed) => fact("step_failed", Some(failed.error)),
        TriggerEvent::TriggerAbandoned(abandoned) => fact("trigger_abandoned", Some(abandoned.error)),
        TriggerEvent::AbandonmentReported(reported) => fact("abandonment_reported", Some(reported.step)),
        TriggerEvent::TriggerRetried(retried) => Fact {
            kind: "admin_action",
            actor: Some(retried.requested_by),
            detail: Some(retried.step),
            ..Fact::default()
        },
        TriggerEvent::ConversationStopped(stopped) => Fact {
            kind: "conversation_stopped",
            actor: Some(stopped.stopped_by),
            detail: Some(stopped.conversation_id),
            ..Fact::default()
        },
        TriggerEvent::ConversationRequested(_) | TriggerEvent::ConversationStatusChanged(_) => return None,
    })
}

// Queries.

/// One row of `audit_log`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Log position of the event it came from.
    pub position: u64,
    pub kind: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub repository: Option<String>,
    /// Microseconds since the epoch.
    pub occurred_at: i64,
    pub event_type: String,
    pub event_id: String,
    pub stream: String,
    pub detail: Option<String>,
}

impl AuditRow {
    fn from_row(row: &SqlRow) -> Result<Self, SqlError> {
        Ok(AuditRow {
            position: row.get_by_name("position")?,
            kind: row.get_by_name("kind")?,
            actor: row.get_by_name("actor")?,
            target: row.get_by_name("target")?,
            repository: row.get_by_name("repository")?,
            occurred_at: row.get_by_name("occurred_at")?,
            event_type: row.get_by_name("event_type")?,
            event_id: row.get_by_name("event_id")?,
            stream: row.get_by_name("stream")?,
            detail: row.get_by_name("detail")?,
        })
    }
}

/// Which audit rows a [`list`] returns; `since`/`until` bound `occurred_at`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only rows after this position (the cursor).
    pub after: u64,
    pub kind: Option<String>,
    pub actor: Option<String>,
    pub repository: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// A page of the audit log in log order.
pub async fn list(db: &SqlDb, f: AuditFilter, limit: u32) -> Result<Page<AuditRow>, SqlError> {
    let mut filter = Filter::default();
    filter.and_some("kind = ?", f.kind);
    filter.and_some("actor = ?", f.actor);
    filter.and_some("repository = ?", f.repository);
    let window = ("occurred_at", TIME_RANGES);
    if !time_ranges::positions_and_time_window(db, &mut filter, f.after, window, f.since, f.until).await? {
        return Ok(Page::empty());
    }
    let sql = format!(
        "SELECT position, kind, actor, target, repository, occurred_at, event_type, event_id, stream, detail
         FROM audit_log{} ORDER BY position LIMIT {limit}",
        filter.sql()
    );
    fetch_page(db, &sql, filter.params, limit, AuditRow::from_row, |row| row.position).await
}
