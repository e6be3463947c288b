//! Runs [`EventHandler`]s over the log: catch up from their checkpoints, then
//! follow. Each batch's statements and the new checkpoints commit in one
//! transaction, so a crash can neither skip an event nor apply it twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

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

/// A handler further behind the furthest of its group than this (a read
/// model reset by a schema change at start, say) catches up on a reading of
/// its own before it rejoins: in the shared reading it would hold the others'
/// live updates back until it reached the head.
const CATCH_UP_ALONE_BEYOND: u64 = 10 * BATCH as u64;

/// Follows the log with `handlers` until `stop` turns true. They share one
/// reading of the log and one transaction per batch (each with its own
/// checkpoint), except that one far behind the others catches up on a
/// reading of its own first; failures are logged and retried from the last
/// checkpoints; nothing is skipped.
pub async fn run_handlers(
    store: Arc<dyn EventStore>,
    db: SqlDb,
    handlers: Vec<Arc<dyn EventHandler>>,
    stop: watch::Receiver<bool>,
) {
    if handlers.is_empty() {
        return;
    }
    let (rejoin, mut rejoining) = mpsc::unbounded_channel();
    let mut group = handlers;
    let mut catching_up = Vec::new();
    loop {
        let (laggards, target) = split_off_laggards(&db, &mut group).await;
        if !laggards.is_empty() {
            let catch_up = catch_up_alone(store.clone(), db.clone(), laggards, target, rejoin.clone(), stop.clone());
            catching_up.push(tokio::spawn(catch_up));
        }
        tokio::select! {
            ended = follow_with_retries(&store, &db, &group, Until::Stopped, stop.clone()) => {
                if ended == Ended::Stopped {
                    break;
                }
                // A rebuild or a replay moved a checkpoint: see who is behind now.
            }
            // The group's reading restarts from the earliest checkpoint, theirs.
            Some(caught_up) = rejoining.recv() => group.extend(caught_up),
        }
    }
    // Those still catching up saw the same stop: let them finish their batch.
    for task in catching_up {
        let _ = task.await;
    }
}

/// The handlers' names, for log lines.
fn joined_names(handlers: &[Arc<dyn EventHandler>]) -> String {
    handlers.iter().map(|h| h.name()).collect::<Vec<_>>().join(",")
}

/// Moves the handlers far behind the furthest one out of `group`; returns
/// them and the furthest one's position. A checkpoint that cannot be read
/// leaves the group whole (its reading will meet the same error and retry).
async fn split_off_laggards(
    db: &SqlDb,
    group: &mut Vec<Arc<dyn EventHandler>>,
) -> (Vec<Arc<dyn EventHandler>>, Position) {
    let mut positions = Vec::with_capacity(group.len());
    for handler in group.iter() {
        match checkpoint_of(db, handler.name()).await {
            Ok(position) => positions.push(position),
            Err(_) => return (Vec::new(), Position::START),
        }
    }
    let furthest = positions.iter().copied().max().unwrap_or_default();
    let (mut kept, mut laggards) = (Vec::new(), Vec::new());
    for (handler, position) in group.drain(..).zip(positions) {
        if position.0.saturating_add(CATCH_UP_ALONE_BEYOND) < furthest.0 {
            laggards.push(handler);
        } else {
            kept.push(handler);
        }
    }
    *group = kept;
    (laggards, furthest)
}

/// Brings `handlers` up to `target` on a reading of their own, then hands
/// them back through `rejoin`.
async fn catch_up_alone(
    store: Arc<dyn EventStore>,
    db: SqlDb,
    handlers: Vec<Arc<dyn EventHandler>>,
    target: Position,
    rejoin: mpsc::UnboundedSender<Vec<Arc<dyn EventHandler>>>,
    stop: watch::Receiver<bool>,
) {
    let names = joined_names(&handlers);
    tracing::info!(handlers = %names, target = target.0, "far behind the others: catching up on a reading of their own");
    loop {
        match follow_with_retries(&store, &db, &handlers, Until::Reached(target), stop.clone()).await {
            Ended::Reached => break,
            Ended::CheckpointMoved => continue,
            Ended::Stopped => return,
        }
    }
    tracing::info!(handlers = %names, "caught up: following the log with the others again");
    let _ = rejoin.send(handlers);
}

/// When a reading is to end (besides an error, which it retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Stopped,
    /// Every handler has applied the log up to here.
    Reached(Position),
}

/// How a reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Reached,
    /// A rebuild, a replay or another runner moved a checkpoint.
    CheckpointMoved,
    Stopped,
}

/// Runs [`follow`] until `until`, retrying failures from the last
/// checkpoints with a growing pause.
async fn follow_with_retries(
    store: &Arc<dyn EventStore>,
    db: &SqlDb,
    handlers: &[Arc<dyn EventHandler>],
    until: Until,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let names = joined_names(handlers);
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        let result = tokio::select! {
            result = follow(store, db, handlers, until) => result,
            _ = stop.changed() => return Ended::Stopped,
        };
        match result {
            Ok(()) => return Ended::Reached,
            Err(HandlerError::CheckpointMoved) => {
                tracing::info!(handlers = %names, "checkpoint moved (rebuild or replay); following from the new one");
                return Ended::CheckpointMoved;
            }
            Err(e) => {
                tracing::warn!(handlers = %names, error = %e, retry_in_ms = backoff.as_millis() as u64, "event handler failed; retrying from its checkpoint");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Ended::Stopped,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ended::Stopped
}

/// Applies the log to `handlers` from their checkpoints; returns `Ok` only
/// once they have all reached `until`'s position.
async fn follow(
    store: &Arc<dyn EventStore>,
    db: &SqlDb,
    handlers: &[Arc<dyn EventHandler>],
    until: Until,
) -> Result<(), HandlerError> {
    let mut checkpoints = Vec::with_capacity(handlers.len());
    for handler in handlers {
        checkpoints.push(claim_checkpoint(db, handler.name()).await?);
    }
    let reached = |checkpoints: &[Checkpoint]| match until {
        Until::Reached(target) => checkpoints.iter().all(|c| c.position >= target),
        Until::Stopped => false,
    };
    if reached(&checkpoints) {
        return Ok(());
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
            // A handler a little behind the others catches up within the
            // same reading; one ahead skips what it has applied.
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
        if !statements.is_empty() {
            match db.write(compact(statements)).await {
                Ok(_) => checkpoints = moved,
                Err(e) if is_checkpoint_conflict(&e) => return Err(HandlerError::CheckpointMoved),
                Err(e) => return Err(e.into()),
            }
        }
        if reached(&checkpoints) {
            return Ok(());
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
