//! PostgreSQL: the shared engine for several hookwise instances. Appends from
//! one instance are grouped by a single writer task; every group commits under
//! a transaction-scoped advisory lock taken before the insert, so positions
//! become visible in order across all instances. LISTEN/NOTIFY wakes
//! subscribers early; they poll regardless.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::group_commit::{run_writer, Appender, CommitGroup, GroupResults};
use super::now_micros;
use super::{codec, sql_int};
use super::{
    plan_batch, AppendRequest, AppendResult, EventStore, ExistingEvent, ExpectedVersion, NewEvent, Position,
    RecordedEvent, StoreError,
};
use crate::sql::postgres::{apply_migrations, MigrationLock};
use crate::sql::{connect_pool, Migration};

/// Advisory lock key that serialises appends (ASCII "hookwise" folded into an i64).
const APPEND_LOCK: i64 = 0x686f_6f6b_7769_7365;
const NOTIFY_CHANNEL: &str = "hookwise_events";

const MIGRATIONS: &[Migration] = &[
    (
        1,
        "CREATE TABLE events (
        position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream TEXT NOT NULL,
        version BIGINT NOT NULL,
        event_id UUID NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        data TEXT NOT NULL,
        payload BYTEA,
        payload_codec BIGINT NOT NULL DEFAULT 0,
        recorded_at BIGINT NOT NULL,
        UNIQUE (stream, version)
    );
    -- Payloads arrive compressed (src/store/codec.rs): no second compression by TOAST.
    ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTERNAL;",
    ),
    (
        2,
        // A typical compressed delivery (4-8 KB) stays in the row instead of
        // being cut into TOAST chunks: one heap insert and no TOAST index
        // insert per event, and reads need no second lookup.
        "ALTER TABLE events SET (toast_tuple_target = 8160);",
    ),
    (
        3,
        // As SQLite's migration 2: the first `delivery-{hook_id}-{guid}` of
        // each GUID becomes `delivery-{guid}`.
        "UPDATE events SET stream = 'delivery-' || substring(stream from '^delivery-[0-9]+-(.+)$')
         WHERE position IN (
             SELECT MIN(position) FROM events
             WHERE stream ~ '^delivery-[0-9]+-.+$'
             GROUP BY substring(stream from '^delivery-[0-9]+-(.+)$')
         );",
    ),
    (
        4,
        // One row, replaced by each write probe (`/readyz`): never grows.
        "CREATE TABLE write_probe (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at BIGINT NOT NULL);",
    ),
];

type OneParam<'a> = [&'a (dyn ToSql + Sync); 1];

pub struct PostgresStore {
    pool: Pool,
    queue: Appender,
    head: watch::Sender<Position>,
    listener: tokio::task::JoinHandle<()>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl PostgresStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = connect_pool(url)?;
        migrate(&pool).await?;
        let client = pool.get().await.map_err(unavailable)?;
        let last: i64 =
            client.query_one("SELECT COALESCE(MAX(position), 0) FROM events", &[]).await.map_err(unavailable)?.get(0);
        drop(client);
        let (head, _) = watch::channel(Position(last as u64));
        let (queue, inbox) = Appender::new();
        tokio::spawn(run_writer(PostgresGroups(pool.clone()), inbox, head.clone()));
        let config = tokio_postgres::Config::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))?;
        let listener = tokio::spawn(listen_for_appends(config, head.clone()));
        Ok(PostgresStore { pool, queue, head, listener })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    async fn read_all_selecting(
        &self,
        select: &str,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("{select} WHERE position > $1 ORDER BY position LIMIT $2"))
            .await
            .map_err(unavailable)?;
        let rows = client.query(&stmt, &[&sql_int(after.0), &sql_int(limit)]).await.map_err(unavailable)?;
        rows.iter().map(read_event).collect()
    }
}

/// The log's migrations, with the one PostgreSQL migration runner.
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(unavailable)?;
    // Several instances may start at once: one migrates, the others wait.
    let lock = MigrationLock::Key(APPEND_LOCK + 1);
    Ok(apply_migrations(&mut client, "events", MIGRATIONS, lock).await?)
}

/// Commits a group on a connection of the pool.
struct PostgresGroups(Pool);

impl CommitGroup for PostgresGroups {
    const BACKEND: &'static str = "postgres";
    type Error = StoreError;

    fn commit_group(
        &mut self,
        requests: &[AppendRequest],
    ) -> impl std::future::Future<Output = Result<GroupResults, StoreError>> + Send {
        commit_group(&self.0, requests)
    }

    fn commit_probe(&mut self) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        let pool = self.0.clone();
        async move {
            let client = pool.get().await.map_err(unavailable)?;
            client
                .execute(
                    "INSERT INTO write_probe (id, checked_at) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                    &[&now_micros()],
                )
                .await
                .map_err(unavailable)?;
            Ok(())
        }
    }
}

async fn commit_group(pool: &Pool, requests: &[AppendRequest]) -> Result<GroupResults, StoreError> {
    let client = pool.get().await.map_err(unavailable)?;
    let result = commit_group_on(&client, requests).await;
    if result.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
        // The connection is in an unknown state: never hand it out again.
        drop(deadpool_postgres::Object::take(client));
    }
    result
}

/// Two pipelined round trips per group: (BEGIN, lock, read the streams'
/// versions and any known event ids), then (insert, notify, COMMIT).
async fn commit_group_on(
    client: &deadpool_postgres::Object,
    requests: &[AppendRequest],
) -> Result<GroupResults, StoreError> {
    let streams: Vec<&str> = requests.iter().map(|r| r.stream.as_str()).collect();
    let ids: Vec<Uuid> = requests.iter().flat_map(|r| r.events.iter().map(|e| e.event_id)).collect();

    let (lock, versions_of, find_events, insert, notify) = tokio::try_join!(
        client.prepare_cached("SELECT pg_advisory_xact_lock($1)"),
        client.prepare_cached(
            "SELECT s.stream, (SELECT MAX(e.version) FROM events e WHERE e.stream = s.stream)
             FROM unnest($1::text[]) AS s(stream)",
        ),
        client.prepare_cached(
            "SELECT e.event_id, e.stream, e.version, e.position
             FROM unnest($1::uuid[]) AS i(id) JOIN events e ON e.event_id = i.id",
        ),
        client.prepare_cached(
            "INSERT INTO events
                 (stream, version, event_id, event_type, schema_version, data, payload, payload_codec, recorded_at)
             SELECT s, v, i, t, sv, d, p, c, $9
             FROM unnest($1::text[], $2::int8[], $3::uuid[], $4::text[], $5::int4[], $6::text[], $7::bytea[],
                         $8::int8[])
                  WITH ORDINALITY AS r(s, v, i, t, sv, d, p, c, n)
             ORDER BY n
             RETURNING event_id, position",
        ),
        client.prepare_cached("SELECT pg_notify($1, '')"),
    )
    .map_err(unavailable)?;

    // The lock is granted before the reads run: they see every earlier group.
    // Custom plans: a generic plan cached while the table was small keeps
    // scanning it whole as it grows (deliveries/s fell from 2,200 to 600 in
    // 30 s); planning per group costs little.
    let lock_params: OneParam = [&APPEND_LOCK];
    let version_params: OneParam = [&streams];
    let event_params: OneParam = [&ids];
    let (_, _, version_rows, event_rows) = tokio::try_join!(
        client.batch_execute("BEGIN; SET LOCAL plan_cache_mode = force_custom_plan"),
        client.execute(&lock, &lock_params),
        client.query(&versions_of, &version_params),
        client.query(&find_events, &event_params),
    )
    .map_err(unavailable)?;

    let mut versions: HashMap<String, Option<u64>> = streams.iter().map(|s| ((*s).to_owned(), None)).collect();
    for row in version_rows {
        let stream: String = row.get(0);
        let version: Option<i64> = row.get(1);
        versions.insert(stream, version.map(|v| v as u64));
    }
    let existing: HashMap<Uuid, ExistingEvent> = event_rows
        .into_iter()
        .map(|row| {
            let id: Uuid = row.get(0);
            let found = ExistingEvent {
                stream: row.get(1),
                version: row.get::<_, i64>(2) as u64,
                position: Position(row.get::<_, i64>(3) as u64),
            };
            (id, found)
        })
        .collect();

    let plan = plan_batch(requests, versions, &existing);
    let mut positions = Vec::with_capacity(plan.rows.len());
    if !plan.rows.is_empty() {
        let now = now_micros();
        let mut row_streams = Vec::with_capacity(plan.rows.len());
        let mut row_versions = Vec::with_capacity(plan.rows.len());
        let mut row_ids = Vec::with_capacity(plan.rows.len());
        let mut row_types = Vec::with_capacity(plan.rows.len());
        let mut row_schemas = Vec::with_capacity(plan.rows.len());
        let mut row_data = Vec::with_capacity(plan.rows.len());
        let mut row_payloads: Vec<Option<&[u8]>> = Vec::with_capacity(plan.rows.len());
        let mut row_codecs = Vec::with_capacity(plan.rows.len());
        for row in &plan.rows {
            row_streams.push(row.stream);
            row_versions.push(row.version as i64);
            row_ids.push(row.event.event_id);
            row_types.push(row.event.event_type.as_str());
            row_schemas.push(row.event.schema_version as i32);
            let data = std::str::from_utf8(&row.event.data)
                .map_err(|_| StoreError::InvalidEvent { event_id: row.event.event_id, problem: "data is not UTF-8" })?;
            row_data.push(data);
            row_payloads.push(row.event.payload.as_deref());
            row_codecs.push(row.payload_codec);
        }
        let insert_params: [&(dyn ToSql + Sync); 9] = [
            &row_streams,
            &row_versions,
            &row_ids,
            &row_types,
            &row_schemas,
            &row_data,
            &row_payloads,
            &row_codecs,
            &now,
        ];
        let notify_params: OneParam = [&NOTIFY_CHANNEL];
        let (inserted, _, _) = tokio::try_join!(
            client.query(&insert, &insert_params),
            client.execute(&notify, &notify_params),
            client.batch_execute("COMMIT"),
        )
        .map_err(unavailable)?;
        let by_id: HashMap<Uuid, i64> = inserted.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        for id in &row_ids {
            let position =
                by_id.get(id).ok_or_else(|| unavailable(format!("the insert returned no position for {id}")))?;
            positions.push(Position(*position as u64));
        }
    } else {
        client.batch_execute("COMMIT").await.map_err(unavailable)?;
    }
    Ok(plan.results(&positions))
}

/// Turns NOTIFYs from any instance into wake-ups for local subscribers,
/// reconnecting after a lost connection. Aborted when the store is dropped.
async fn listen_for_appends(config: tokio_postgres::Config, head: watch::Sender<Position>) {
    use futures_util::future::poll_fn;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let head = head.clone();
                let driver = tokio::spawn(async move {
                    while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => head.send_modify(|_| {}),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await.is_ok() {
                    let _ = driver.await;
                } else {
                    driver.abort();
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "LISTEN connection failed; subscribers poll meanwhile")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn read_event(row: &tokio_postgres::Row) -> Result<RecordedEvent, StoreError> {
    let payload = match row.get::<_, Option<Vec<u8>>>(7) {
        Some(stored) => Some(codec::decode(stored, row.get(9))?),
        None => None,
    };
    Ok(RecordedEvent {
        position: Position(row.get::<_, i64>(0) as u64),
        stream: row.get(1),
        version: row.get::<_, i64>(2) as u64,
        event_id: row.get(3),
        event_type: row.get(4),
        schema_version: row.get::<_, i32>(5) as u32,
        data: row.get::<_, String>(6).into_bytes(),
        payload,
        recorded_at_micros: row.get(8),
    })
}

const SELECT_EVENT: &str =
    "SELECT position, stream, version, event_id, event_type, schema_version, data, payload, recorded_at, payload_codec FROM events";
/// The same columns with the payload left out (never read from disk).
const SELECT_EVENT_WITHOUT_PAYLOAD: &str =
    "SELECT position, stream, version, event_id, event_type, schema_version, data, NULL::bytea, recorded_at, payload_codec FROM events";

#[async_trait]
impl EventStore for PostgresStore {
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
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("{SELECT_EVENT} WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3"))
            .await
            .map_err(unavailable)?;
        let rows =
            client.query(&stmt, &[&stream, &sql_int(from_version), &sql_int(limit)]).await.map_err(unavailable)?;
        rows.iter().map(read_event).collect()
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all_selecting(SELECT_EVENT, after, limit).await
    }

    async fn read_all_without_payloads(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_all_selecting(SELECT_EVENT_WITHOUT_PAYLOAD, after, limit).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT COALESCE(MAX(position), 0) FROM events", &[]).await.map_err(unavailable)?;
        Ok(Position(row.get::<_, i64>(0) as u64))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.query_one("SELECT 1", &[]).await.map_err(unavailable)?;
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
