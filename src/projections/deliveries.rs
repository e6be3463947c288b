//! `deliveries`: one row per stored GitHub delivery, and what became of it.

use super::query::{fetch_page, Filter, Page};
use super::read_model::{ReadModel, Tables};
use super::time_ranges::{self, time_ranges_table, time_ranges_upsert};
use super::trigger_outcomes::OUTCOME_IGNORED;
use crate::events::{DomainEvent, WebhookReceived};
use crate::runner::HandlerError;
use crate::sql::{SqlDb, SqlError, SqlRow, Statement};
use crate::sql_params;
use crate::store::RecordedEvent;

pub struct Deliveries;

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
        // 2: the filter indexes carry the time; 3: time ranges per block of positions;
        // 4: delivery streams renamed `delivery-{guid}` (the payload is read by the row's stream).
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

// Queries.

/// One row of `deliveries`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    /// Log position of its `WebhookReceived`.
    pub position: u64,
    /// The stream its `WebhookReceived` is on (the raw payload is there).
    pub stream: String,
    pub delivery_id: String,
    pub hook_id: String,
    pub event: String,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub repository_id: Option<u64>,
    pub sender: Option<String>,
    pub sender_type: Option<String>,
    pub installation_id: Option<u64>,
    /// Microseconds since the epoch.
    pub received_at: i64,
    pub secret: String,
    /// [`OUTCOME_IGNORED`], [`OUTCOME_TRIGGER`] or [`OUTCOME_REJECTED`].
    pub outcome: String,
    pub reason: Option<String>,
    pub trigger_id: Option<String>,
}

const COLUMNS: &str = "position, delivery_id, hook_id, event, action, repository, repository_id, sender, sender_type,
    installation_id, received_at, secret, outcome, reason, trigger_id, stream";

impl DeliveryRow {
    fn from_row(row: &SqlRow) -> Result<Self, SqlError> {
        Ok(DeliveryRow {
            position: row.get_by_name("position")?,
            stream: row.get_by_name("stream")?,
            delivery_id: row.get_by_name("delivery_id")?,
            hook_id: row.get_by_name("hook_id")?,
            event: row.get_by_name("event")?,
            action: row.get_by_name("action")?,
            repository: row.get_by_name("repository")?,
            repository_id: row.get_by_name("repository_id")?,
            sender: row.get_by_name("sender")?,
            sender_type: row.get_by_name("sender_type")?,
            installation_id: row.get_by_name("installation_id")?,
            received_at: row.get_by_name("received_at")?,
            secret: row.get_by_name("secret")?,
            outcome: row.get_by_name("outcome")?,
            reason: row.get_by_name("reason")?,
            trigger_id: row.get_by_name("trigger_id")?,
        })
    }
}

/// Which deliveries a [`list`] returns; `since`/`until` bound `received_at`.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only rows after this position (the cursor).
    pub after: u64,
    pub repository: Option<String>,
    pub event: Option<String>,
    pub action: Option<String>,
    pub sender: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// A page of deliveries in log order.
pub async fn list(db: &SqlDb, f: DeliveryFilter, limit: u32) -> Result<Page<DeliveryRow>, SqlError> {
    let mut filter = Filter::default();
    filter.and_some("repository = ?", f.repository);
    filter.and_some("event = ?", f.event);
    filter.and_some("action = ?", f.action);
    filter.and_some("sender = ?", f.sender);
    filter.and_some("outcome = ?", f.outcome);
    let window = ("received_at", TIME_RANGES);
    if !time_ranges::positions_and_time_window(db, &mut filter, f.after, window, f.since, f.until).await? {
        return Ok(Page::empty());
    }
    let sql = format!("SELECT {COLUMNS} FROM deliveries{} ORDER BY position LIMIT {limit}", filter.sql());
    fetch_page(db, &sql, filter.params, limit, DeliveryRow::from_row, |row| row.position).await
}

/// The first stored delivery with the id `delivery_id`.
pub async fn get(db: &SqlDb, delivery_id: &str) -> Result<Option<DeliveryRow>, SqlError> {
    let sql = format!("SELECT {COLUMNS} FROM deliveries WHERE delivery_id = ? ORDER BY position LIMIT 1");
    db.query(&sql, sql_params![delivery_id]).await?.first().map(DeliveryRow::from_row).transpose()
}
