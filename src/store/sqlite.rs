//! The embedded default: one SQLite file in WAL mode. A single writer thread
//! owns the write connection and commits every waiting append in one
//! `BEGIN IMMEDIATE` transaction with `synchronous=FULL` (group commit);
//! readers use a small pool of read-only connections.

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::watch;
use uuid::Uuid;

use super::group_commit::{block_on, run_writer, Appender, CommitGroup, GroupResults};
use super::{codec, sql_int};
use super::{
    plan_batch, AppendRequest, AppendResult, EventStore, ExistingEvent, ExpectedVersion, NewEvent, Position,
    RecordedEvent, StoreError,
};
use crate::sql::sqlite::apply_migrations;
use crate::sql::Migration;

const MIGRATIONS: &[Migration] = &[
    (
        1,
        "CREATE TABLE events (
            position INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            event_id BLOB NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            schema_version INTEGER NOT NULL,
            data TEXT NOT NULL,
            payload BLOB,
            payload_codec INTEGER NOT NULL DEFAULT 0,
            recorded_at INTEGER NOT NULL,
            UNIQUE (stream, version)
        );",
    ),
    (
        2,
        // A delivery GUID is one stream whatever hook id carried it: the first
        // `delivery-{hook_id}-{guid}` of each GUID becomes `delivery-{guid}`
        // (the stream name is the log's index; events, ids and positions stay).
        // Later copies of a GUID keep their names: history, still read in order.
        "UPDATE events SET stream = 'delivery-' || substr(stream, instr(substr(stream, 10), '-') + 10)
         WHERE position IN (
             SELECT MIN(position) FROM events
             WHERE stream >= 'delivery-' AND stream < 'delivery.'
               AND instr(substr(stream, 10), '-') > 1
               AND substr(stream, 10, instr(substr(stream, 10), '-') - 1) NOT GLOB '*[^0-9]*'
             GROUP BY substr(stream, instr(substr(stream, 10), '-') + 10)
         );",
    ),
    (
        3,
        // One row, replaced by each write probe (`/readyz`): never grows.
        "CREATE TABLE write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at INTEGER NOT NULL);",
    ),
];

pub struct SqliteStore {
    queue: Appender,
    readers: r2d2::Pool<SqliteConnectionManager>,
    head: watch::Sender<Position>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens the database at `path` (created with its folder if missing),
    /// applies migrations and starts the writer thread.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path)).await.map_err(unavailable)?
    }

    fn open_blocking(path: &str) -> Result<Self, StoreError> {
        if path.is_empty() {
            return Err(StoreError::InvalidUrl("sqlite:// needs a file path".into()));
        }
        if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| unavailable(format!("creating {}: {e}", parent.display())))?;
        }
        let mut writer = Connection::open(path).map_err(unavailable)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;
                 PRAGMA foreign_keys = ON;",
            )
            .map_err(unavailable)?;
        migrate(&mut writer)?;

        let manager = SqliteConnectionManager::file(path)
            .with_flags(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
            // Readers stream through the log once: a small page cache each keeps memory flat.
            .with_init(|c| c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -512;"));
        let readers = r2d2::Pool::builder().max_size(8).min_idle(Some(1)).build(manager).map_err(unavailable)?;

        let last: i64 =
            writer.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| r.get(0)).map_err(unavailable)?;
        let (head, _) = watch::channel(Position(last as u64));
        let (queue, inbox) = Appender::new();
        // Copying the WAL back into the database happens on a thread of its
        // own, off the commit path; the writer's own auto-checkpoint stays as
        // a backstop at a much larger WAL size.
        writer.execute_batch("PRAGMA wal_autocheckpoint = 16384;").map_err(unavailable)?;
        let checkpointer = Connection::open(path).map_err(unavailable)?;
        checkpointer.execute_batch("PRAGMA busy_timeout = 5000;").map_err(unavailable)?;
        let alive = head.subscribe();
        std::thread::Builder::new()
            .name("sqlite-checkpt".into())
            .spawn(move || run_checkpointer(checkpointer, alive))
            .map_err(unavailable)?;
        let head_for_writer = head.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || block_on(run_writer(SqliteGroups(writer), inbox, head_for_writer)))
            .map_err(unavailable)?;
        Ok(SqliteStore { queue, readers, head })
    }

    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get().map_err(unavailable)?;
            query(&conn).map_err(unavailable)
        })
        .await
        .map_err(unavailable)?
    }

    async fn read_all_selecting(
        &self,
        select: &'static str,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!("{select} WHERE position > ?1 ORDER BY position LIMIT ?2"))?;
            let rows = stmt.query_map(params![sql_int(after.0), sql_int(limit)], row_to_event)?;
            rows.collect()
        })
        .await
    }
}

/// The log's migrations, with the one SQLite migration runner.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    apply_migrations(conn, "events", MIGRATIONS).map_err(unavailable)
}

/// How often the WAL is copied back into the database file. The writer's WAL
/// syncs wait behind whatever of the database file's writes is in flight on the
/// same disk: small, frequent checkpoints keep each burst of them short
/// (docs/benchmarks.md has the measurements).
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Checkpoints passively (never blocking the writer or readers) until the
/// store and its writer are gone.
fn run_checkpointer(conn: Connection, alive: watch::Receiver<Position>) {
    while alive.has_changed().is_ok() {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
}

/// Commits a group on the writer connection (its thread blocks meanwhile).
struct SqliteGroups(Connection);

impl CommitGroup for SqliteGroups {
    const BACKEND: &'static str = "sqlite";
    type Error = rusqlite::Error;

    fn commit_group(
        &mut self,
        requests: &[AppendRequest],
    ) -> impl std::future::Future<Output = Result<GroupResults, rusqlite::Error>> + Send {
        std::future::ready(commit_group(&mut self.0, requests))
    }

    fn commit_probe(&mut self) -> impl std::future::Future<Output = Result<(), rusqlite::Error>> + Send {
        let probe = self.0.execute(
            "INSERT INTO write_probe (id, checked_at) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
            [super::now_micros()],
        );
        std::future::ready(probe.map(drop))
    }
}

fn commit_group(conn: &mut Connection, requests: &[AppendRequest]) -> rusqlite::Result<GroupResults> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut versions: HashMap<String, Option<u64>> = HashMap::with_capacity(requests.len());
    let mut existing: HashMap<Uuid, ExistingEvent> = HashMap::new();
    {
        let mut version_of = tx.prepare_cached("SELECT MAX(version) FROM events WHERE stream = ?1")?;
        let mut find_event = tx.prepare_cached("SELECT stream, version, position FROM events WHERE event_id = ?1")?;
        for request in requests {
            if !versions.contains_key(&request.stream) {
                let v: Option<i64> = version_of.query_row([&request.stream], |r| r.get(0))?;
                versions.insert(request.stream.clone(), v.map(|v| v as u64));
            }
            for event in &request.events {
                let found = find_event
                    .query_row([event.event_id.as_bytes().as_slice()], |r| {
                        Ok(ExistingEvent {
                            stream: r.get(0)?,
                            version: r.get::<_, i64>(1)? as u64,
                            position: Position(r.get::<_, i64>(2)? as u64),
                        })
                    })
                    .optional()?;
                if let Some(found) = found {
                    existing.insert(event.event_id, found);
                }
            }
        }
    }
    let plan = plan_batch(requests, versions, &existing);
    let now = super::now_micros();
    let mut positions = Vec::with_capacity(plan.rows.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (stream, version, event_id, event_type, schema_version, data, payload, payload_codec, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for row in &plan.rows {
            let data = std::str::from_utf8(&row.event.data)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            insert.execute(params![
                row.stream,
                row.version as i64,
                row.event.event_id.as_bytes().as_slice(),
                row.event.event_type,
                row.event.schema_version,
                data,
                row.event.payload.as_deref(),
                row.payload_codec,
                now,
            ])?;
            positions.push(Position(tx.last_insert_rowid() as u64));
        }
    }
    tx.commit()?;
    Ok(plan.results(&positions))
}

const SELECT_EVENT: &str =
    "SELECT position, stream, version, event_id, event_type, schema_version, data, payload, recorded_at, payload_codec FROM events";
/// The same columns with the payload left out (its overflow pages are never read).
const SELECT_EVENT_WITHOUT_PAYLOAD: &str =
    "SELECT position, stream, version, event_id, event_type, schema_version, data, NULL, recorded_at, payload_codec FROM events";

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let id_bytes: Vec<u8> = r.get(3)?;
    let event_id = Uuid::from_slice(&id_bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Blob, Box::new(e)))?;
    Ok(RecordedEvent {
        position: Position(r.get::<_, i64>(0)? as u64),
        stream: r.get(1)?,
        version: r.get::<_, i64>(2)? as u64,
        event_id,
        event_type: r.get(4)?,
        schema_version: r.get(5)?,
        data: r.get_ref(6)?.as_bytes()?.to_vec(),
        payload: match r.get::<_, Option<Vec<u8>>>(7)? {
            Some(stored) => {
                Some(codec::decode(stored, r.get(9)?).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Blob, Box::new(e))
                })?)
            }
            None => None,
        },
        recorded_at_micros: r.get(8)?,
    })
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.queue.append(AppendRequest::encoded(stream, expected, events)).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "{SELECT_EVENT} WHERE stream = ?1 AND version >= ?2 ORDER BY version LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![stream, sql_int(from_version), sql_int(limit)], row_to_event)?;
            rows.collect()
        })
        .await
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all_selecting(SELECT_EVENT, after, limit).await
    }

    async fn read_all_without_payloads(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all_selecting(SELECT_EVENT_WITHOUT_PAYLOAD, after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.read(|c| c.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|p| Position(p as u64))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))).await?;
        if self.queue.is_closed() {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.queue.check_writable().await
    }

    fn head_hint(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    async fn close(&self) {
        self.queue.close().await
    }
}
