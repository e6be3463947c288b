//! The event log: one ordered sequence of events with a global position, split
//! into streams that each carry their own gap-free version.
//!
//! Both SQL backends share the same write path ([`group_commit`]): appends are
//! queued to a single writer that commits whatever is waiting in one
//! transaction, while [`plan`] checks every append against its own expected
//! version.

pub mod codec;
mod group_commit;
#[cfg(feature = "kurrentdb")]
pub mod kurrent;
mod plan;
pub mod postgres;
pub mod sqlite;
mod subscription;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use uuid::Uuid;

pub use plan::{plan_batch, AppendRequest, BatchPlan, ExistingEvent, PlannedRow};
pub use subscription::Subscription;

/// A global log position. `Position(0)` is before the first event; the first
/// event is at position 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    pub const START: Position = Position(0);
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the writer expects of the stream before its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have this version (versions start at 0).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("stream exists"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// An event to append. `event_id` makes a retried append idempotent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// The event's JSON.
    pub data: Vec<u8>,
    /// Opaque bytes kept exactly as given (a webhook's body).
    pub payload: Option<Bytes>,
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream: String,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: Vec<u8>,
    pub payload: Option<Bytes>,
    /// Microseconds since the Unix epoch, set when the event was committed.
    pub recorded_at_micros: i64,
}

impl RecordedEvent {
    pub fn recorded_at(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.recorded_at_micros) * 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// The outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Position of the first event of this append (or of the events already
    /// stored, for an idempotent retry). `None` for an empty append.
    pub first_position: Option<Position>,
    /// The stream's version after the append (`None`: the stream does not exist).
    pub stream_version: Option<u64>,
    /// True when every event id was already stored in this stream: nothing was written.
    pub already_stored: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream}: expected {expected}, but its version is {actual:?}")]
    WrongExpectedVersion { stream: String, expected: ExpectedVersion, actual: Option<u64> },
    #[error("event {event_id} is already stored in another stream or another append")]
    DuplicateEventId { event_id: Uuid },
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("the event store is shutting down")]
    Closed,
    /// What the log holds cannot be read back (a payload that does not
    /// decompress, an event KurrentDB wrote differently).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// An event to append is not one the log can hold.
    #[error("event {event_id}: {problem}")]
    InvalidEvent { event_id: Uuid, problem: &'static str },
    /// An event could not be encoded to be appended.
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
}

impl From<crate::sql::SqlError> for StoreError {
    fn from(e: crate::sql::SqlError) -> Self {
        match e {
            crate::sql::SqlError::InvalidUrl(url) => StoreError::InvalidUrl(url),
            e => StoreError::Unavailable(e.to_string()),
        }
    }
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Closed)
    }
}

/// The event log. Every backend passes the conformance suite in
/// `tests/api/store_conformance.rs`.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if the stream matches `expected`. When every
    /// event id is already stored in this stream, nothing is written and the
    /// result says `already_stored` (a retry of an append that succeeded).
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Events of one stream from `from_version` on, at most `limit` of them.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events with a position strictly after `after`, in position order.
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// [`read_all`](Self::read_all) with every `payload` left out (`None`),
    /// for readers that only need the events' data: the SQL backends then
    /// neither read nor decompress the stored bodies.
    async fn read_all_without_payloads(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.read_all(after, limit).await?;
        for event in &mut events {
            event.payload = None;
        }
        Ok(events)
    }

    /// The position of the last committed event.
    async fn head(&self) -> Result<Position, StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether the log can be written now: `/readyz` answers `503` and `serve`
    /// refuses to start otherwise. Without a way to probe, whether it answers.
    async fn check_writable(&self) -> Result<(), StoreError> {
        self.ping().await
    }

    /// Wakes subscribers when new events may be visible. A hint only:
    /// subscriptions also poll.
    fn head_hint(&self) -> watch::Receiver<Position>;

    /// Waits for queued appends to commit and stops the writer.
    async fn close(&self);
}

/// Catch-up then live subscription to the whole log, `after` exclusive.
pub fn subscribe_all(store: Arc<dyn EventStore>, after: Position) -> Subscription {
    Subscription::new(store, after, true)
}

/// [`subscribe_all`] without the payloads (see [`EventStore::read_all_without_payloads`]).
pub fn subscribe_all_without_payloads(store: Arc<dyn EventStore>, after: Position) -> Subscription {
    Subscription::new(store, after, false)
}

/// Opens (and migrates) the store that `database_url` names:
/// `sqlite://PATH` or `postgres://…`/`postgresql://…`.
pub async fn open(database_url: &str) -> Result<Arc<dyn EventStore>, StoreError> {
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(path).await?;
        Ok(Arc::new(store))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        let store = postgres::PostgresStore::open(database_url).await?;
        Ok(Arc::new(store))
    } else {
        Err(StoreError::InvalidUrl("expected sqlite://PATH or postgres://USER@HOST/DB".to_owned()))
    }
}

/// A position, version or limit as an SQL integer. Saturates: no stored
/// value exceeds `i64::MAX`, so "after u64::MAX" still means "nothing" and
/// `usize::MAX` still means "no limit" (a plain `as` cast would wrap to -1).
pub(crate) fn sql_int<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Opens the event log: KurrentDB when `eventstore_url` is set (needs the
/// cargo feature `kurrentdb`), else the SQL store at `database_url`.
pub async fn open_log(database_url: &str, eventstore_url: Option<&str>) -> Result<Arc<dyn EventStore>, StoreError> {
    match eventstore_url.filter(|url| !url.trim().is_empty()) {
        None => open(database_url).await,
        #[cfg(feature = "kurrentdb")]
        Some(url) => Ok(Arc::new(kurrent::KurrentStore::open(url).await?)),
        #[cfg(not(feature = "kurrentdb"))]
        Some(_) => Err(StoreError::InvalidUrl(KURRENTDB_NOT_BUILT.to_owned())),
    }
}

/// Where the log is, for an operator reading an error: the SQLite file's
/// path, PostgreSQL's URL without its password, or KurrentDB's host.
pub fn describe_log(database_url: &str, eventstore_url: Option<&str>) -> String {
    // The query may carry `password=` too: it is left out whole.
    let without_credentials = |url: &str| match (url.split('?').next().unwrap_or(url), url.find('@')) {
        (url, None) => url.to_owned(),
        (url, Some(_)) => match url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((userinfo, host)) if !userinfo.contains('/') => {
                    let user = userinfo.split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}@{host}")
                }
                _ => url.to_owned(),
            },
            None => url.to_owned(),
        },
    };
    match eventstore_url.filter(|url| !url.trim().is_empty()) {
        Some(url) => format!("KurrentDB at {}", without_credentials(url)),
        None => match database_url.strip_prefix("sqlite://") {
            Some(path) => format!("SQLite file {path}"),
            None => format!("PostgreSQL at {}", without_credentials(database_url)),
        },
    }
}

/// Why `EVENTSTORE_URL` cannot be used by this build.
pub const KURRENTDB_NOT_BUILT: &str = "EVENTSTORE_URL is set, but this hookwise was built without the `kurrentdb` \
     cargo feature: rebuild with `cargo build --release --features kurrentdb`, or unset EVENTSTORE_URL";

/// Microseconds since the Unix epoch: the log's and the SQL side's clock.
pub fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// Largest number of appends committed in one transaction.
pub(crate) const MAX_GROUP: usize = 512;
/// Appends waiting for the writer before callers are made to wait for room.
pub(crate) const QUEUE_DEPTH: usize = 8192;

#[cfg(test)]
mod describe_log_tests {
    use super::describe_log;

    #[test]
    fn the_log_is_named_without_its_credentials() {
        assert_eq!(describe_log("sqlite://data/hw.db", None), "SQLite file data/hw.db");
        assert_eq!(
            describe_log("postgres://hw:s3cret@db.internal:5432/hw?sslmode=require&password=x", None),
            "PostgreSQL at postgres://hw@db.internal:5432/hw"
        );
        assert_eq!(describe_log("postgres://db/hw", None), "PostgreSQL at postgres://db/hw");
        assert_eq!(
            describe_log("sqlite://x", Some("esdb://admin:changeit@kurrent:2113?tls=false")),
            "KurrentDB at esdb://admin@kurrent:2113"
        );
    }
}
