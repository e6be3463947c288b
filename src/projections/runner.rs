//! Runs [`EventHandler`]s over the log: catch up from their checkpoints, then
//! follow. Each batch's statements and the new checkpoints commit in one
//! transaction, so a crash can neither skip an event nor apply it twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::read_model::coalesce_inserts;
use super::time_ranges;
use crate::sql::{Migration, SqlDb, SqlError, Statement};
use crate::sql_params;
use crate::store::{subscribe_all, subscribe_all_without_payloads, EventStore, Position, RecordedEvent, StoreError};

/// Events handled per transaction at most.
const BATCH: usize = 100;

pub const CHECKPOINT_MIGRATIONS: &[Migration] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS checkpoints (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    ),
    // `generation` changes when a rebuild or replay moves a checkpoint under a
    // running handler; a batch whose checkpoint moved is rolled back (the
    // insert into `checkpoint_conflicts` violates its CHECK) and the handler
    // starts again from the new checkpoint.
    (
        2,
        "ALTER TABLE checkpoints ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
         CREATE TABLE IF NOT EXISTS checkpoint_conflicts (never BIGINT CHECK (never = 1));",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the checkpoint was moved by a rebuild, a replay or another runner")]
    CheckpointMoved,
    #[error("{0}")]
    Other(String),
}

/// Something that follows the log and keeps SQL state derived from it.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Names the checkpoint; stable across releases.
    fn name(&self) -> &'static str;

    /// The handler's own tables.
    fn migrations(&self) -> &'static [Migration];

    /// Whether `handle` looks at events' payloads (webhook bodies); when not,
    /// the runner reads the log without them.
    fn reads_payloads(&self) -> bool {
        true
    }

    /// The statements that apply `event`. They run in the same transaction
    /// as the statements of the other events of the batch and the
    /// checkpoint, so they must not rely on reading rows an earlier event of
    /// the batch wrote (express such updates in SQL instead). The handler may
    /// append to the log here, but only idempotently (derived event ids).
    async fn handle(&self, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError>;
}

/// The handler's checkpoint (`Position::START` when it has none).
pub async fn checkpoint_of(db: &SqlDb, name: &str) -> Result<Position, SqlError> {
    let rows = db.query("SELECT position FROM checkpoints WHERE name = ?", sql_params![name]).await?;
    match rows.first() {
        Some(row) => Ok(Position(row.get::<u64>(0)?)),
        None => Ok(Position::START),
    }
}

pub fn save_checkpoint(name: &str, position: Position) -> Statement {
    Statement::new(
        "INSERT INTO checkpoints (name, position, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        sql_params![name, position.0, crate::store::now_micros()],
    )
}

/// Follows the log with `handlers` until `stop` turns true. They share one
/// reading of the log and one transaction per batch (each with its own
/// checkpoint); failures are logged and retried from the last checkpoints;
/// nothing is skipped.
pub async fn run_handlers(
    store: Arc<dyn EventStore>,
    db: SqlDb,
    handlers: Vec<Arc<dyn EventHandler>>,
    mut stop: watch::Receiver<bool>,
) {
    if handlers.is_empty() {
        return;
    }
    let names = handlers.iter().map(|h| h.name()).collect::<Vec<_>>().join(",");
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        let result = tokio::select! {
            result = follow(&store, &db, &handlers) => result,
            _ = stop.changed() => return,
        };
        if let Err(HandlerError::CheckpointMoved) = result {
            tracing::info!(handlers = %names, "checkpoint moved (rebuild or replay); following from the new one");
            continue;
        }
        if let Err(e) = result {
            tracing::warn!(handlers = %names, error = %e, retry_in_ms = backoff.as_millis() as u64, "event handler failed; retrying from its checkpoint");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

async fn follow(
    store: &Arc<dyn EventStore>,
    db: &SqlDb,
    handlers: &[Arc<dyn EventHandler>],
) -> Result<(), HandlerError> {
    let mut checkpoints = Vec::with_capacity(handlers.len());
    for handler in handlers {
        checkpoints.push(claim_checkpoint(db, handler.name()).await?);
    }
    let start = checkpoints.iter().map(|c| c.position).min().unwrap_or_default();
    let mut subscription = if handlers.iter().any(|h| h.reads_payloads()) {
        subscribe_all(store.clone(), start)
    } else {
        subscribe_all_without_payloads(store.clone(), start)
    };
    loop {
        let batch = subscription.next_batch(BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            continue;
        };
        let mut statements = Vec::new();
        let mut moved = checkpoints.clone();
        for ((handler, from), to) in handlers.iter().zip(&checkpoints).zip(&mut moved) {
            // A handler behind the others (its checkpoint reset by a schema
            // change at start, say) catches up within the same reading; one
            // ahead skips what it has applied.
            let unapplied = &batch[batch.partition_point(|e| e.position <= from.position)..];
            if unapplied.is_empty() {
                continue;
            }
            *to = Checkpoint { position: last, generation: from.generation };
            statements.extend(move_checkpoint(handler.name(), *from, *to));
            for event in unapplied {
                statements.extend(handler.handle(event).await?);
            }
        }
        if statements.is_empty() {
            continue;
        }
        match db.write(compact(statements)).await {
            Ok(_) => checkpoints = moved,
            Err(e) if is_checkpoint_conflict(&e) => return Err(HandlerError::CheckpointMoved),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A handler's checkpoint and the generation it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub generation: i64,
}

/// Reads the handler's checkpoint, creating it at the start of the log if missing.
pub async fn claim_checkpoint(db: &SqlDb, name: &str) -> Result<Checkpoint, SqlError> {
    db.write(vec![Statement::new(
        "INSERT INTO checkpoints (name, position, updated_at, generation) VALUES (?, 0, ?, 0)
         ON CONFLICT (name) DO NOTHING",
        sql_params![name, crate::store::now_micros()],
    )])
    .await?;
    let rows = db.query("SELECT position, generation FROM checkpoints WHERE name = ?", sql_params![name]).await?;
    let row = rows.first().ok_or_else(|| SqlError::Database(format!("checkpoint {name} vanished")))?;
    Ok(Checkpoint { position: Position(row.get::<u64>(0)?), generation: row.get::<i64>(1)? })
}

/// Statements that move the checkpoint from `from` to `to` (and bump its
/// generation when `new_generation` differs), failing the whole transaction
/// when the checkpoint is no longer `from`: someone else (a rebuild, a
/// replay, a second runner) moved it. They come first in a transaction so
/// that, on PostgreSQL, the checkpoint row's lock orders competing writers.
pub fn move_checkpoint(name: &str, from: Checkpoint, to: Checkpoint) -> Vec<Statement> {
    vec![
        Statement::new(
            "UPDATE checkpoints SET position = ?, generation = ?, updated_at = ?
             WHERE name = ? AND position = ? AND generation = ?",
            sql_params![
                to.position.0,
                to.generation,
                crate::store::now_micros(),
                name,
                from.position.0,
                from.generation
            ],
        ),
        Statement::new(
            "INSERT INTO checkpoint_conflicts (never) SELECT 0 WHERE NOT EXISTS
             (SELECT 1 FROM checkpoints WHERE name = ? AND position = ? AND generation = ?)",
            sql_params![name, to.position.0, to.generation],
        ),
    ]
}

/// A batch's statements, as few as they can be: time-range upserts folded to
/// one per block, runs of the same insert-or-ignore merged into one insert.
pub fn compact(statements: Vec<Statement>) -> Vec<Statement> {
    coalesce_inserts(time_ranges::fold(statements))
}

/// The guard of [`move_checkpoint`] fired (SQLite and PostgreSQL word it differently).
pub fn is_checkpoint_conflict(e: &SqlError) -> bool {
    let text = e.to_string();
    text.contains("checkpoint_conflicts") || text.contains("never = 1")
}
