//! `deliveries`: one row per stored GitHub delivery, and what became of it.

use super::read_model::{ReadModel, Tables};
use super::runner::HandlerError;
use super::time_ranges::{self, time_ranges_table, time_ranges_upsert};
use crate::events::{DomainEvent, WebhookReceived};
use crate::sql::Statement;
use crate::sql_params;
use crate::store::RecordedEvent;

pub struct Deliveries;

/// Until something decides otherwise, a delivery started nothing.
pub const OUTCOME_IGNORED: &str = "ignored";
pub const OUTCOME_TRIGGER: &str = "trigger";
pub const OUTCOME_REJECTED: &str = "rejected";

const TABLES: &[&str] = &["deliveries", "deliveries_time_ranges"];

/// The deliveries' receipt times per block of positions (see [`time_ranges`]).
pub const TIME_RANGES: &str = "deliveries_time_ranges";
const TIME_RANGES_UPSERT: &str = time_ranges_upsert!("deliveries_time_ranges");

const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {p}deliveries (
    position BIGINT PRIMARY KEY,
    stream TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    hook_id TEXT NOT NULL,
    event TEXT NOT NULL,
    action TEXT,
    repository TEXT,
    repository_id BIGINT,
    sender TEXT,
    sender_id BIGINT,
    sender_type TEXT,
    installation_id BIGINT,
    received_at BIGINT NOT NULL,
    secret TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    trigger_id TEXT
)",
    // Used while projecting (trigger events find their delivery), so built with the table.
    "CREATE INDEX IF NOT EXISTS {p}deliveries_by_delivery_id ON {p}deliveries (delivery_id)",
    "CREATE INDEX IF NOT EXISTS {p}deliveries_by_trigger_id ON {p}deliveries (trigger_id)",
    time_ranges_table!("deliveries_time_ranges"),
];

const CREATE_INDEXES: &[&str] = &[
    // As for the audit log: page order, with the time checked in the index.
    "CREATE INDEX IF NOT EXISTS {p}deliveries_by_repository ON {p}deliveries (repository, position, received_at)",
    "CREATE INDEX IF NOT EXISTS {p}deliveries_by_event ON {p}deliveries (event, position, received_at)",
    "CREATE INDEX IF NOT EXISTS {p}deliveries_by_sender ON {p}deliveries (sender, position, received_at)",
    "CREATE INDEX IF NOT EXISTS {p}deliveries_by_received_at ON {p}deliveries (received_at)",
];

impl ReadModel for Deliveries {
    /// Everything it records is in the events' data.
    fn reads_payloads(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "deliveries"
    }

    fn schema_version(&self) -> i64 {
        // 2: the filter indexes carry the time; 3: time ranges per block of positions.
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
        if event.event_type == WebhookReceived::TYPE {
            let Ok(delivery) = WebhookReceived::decode(event) else {
                tracing::warn!(position = event.position.0, "undecodable WebhookReceived skipped by deliveries");
                return Ok(vec![]);
            };
            return Ok(vec![
                insert(t, event, &delivery),
                time_ranges::record(t, TIME_RANGES_UPSERT, event.position, event.recorded_at_micros),
            ]);
        }
        super::trigger_outcomes::delivery_outcome(t, event)
    }
}

fn insert(t: &Tables, event: &RecordedEvent, d: &WebhookReceived) -> Statement {
    // Keyed by position: applying the event again rewrites the same row, but
    // keeps an outcome that later events already filled in.
    Statement::new(
        t.sql(
            "INSERT INTO {p}deliveries (position, stream, delivery_id, hook_id, event, action, repository,
                repository_id, sender, sender_id, sender_type, installation_id, received_at, secret, outcome)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (position) DO NOTHING",
        ),
        sql_params![
            event.position.0,
            event.stream.as_str(),
            d.delivery_id.as_str(),
            d.hook_id.as_str(),
            d.event.as_str(),
            d.action.as_deref(),
            d.repository.as_ref().map(|r| r.full_name.as_str()),
            d.repository.as_ref().map(|r| r.id),
            d.sender.as_ref().map(|s| s.login.as_str()),
            d.sender.as_ref().map(|s| s.id),
            d.sender.as_ref().map(|s| s.kind.as_str()),
            d.installation_id,
            event.recorded_at_micros,
            d.secret.as_str(),
            OUTCOME_IGNORED
        ],
    )
}
