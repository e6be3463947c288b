//! Runs an [`EventHandler`] over the log: catch up from its checkpoint, then
//! follow. Each batch's statements and the new checkpoint commit in one
//! transaction, so a crash can neither skip an event nor apply it twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::sql::{Migration, SqlDb, SqlError, Statement};
use crate::sql_params;
use crate::store::{subscribe_all, EventStore, Position, RecordedEvent, StoreError};

/// Events handled per transaction at most.
const BATCH: usize = 500;

pub const CHECKPOINT_MIGRATIONS: &[Migration] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS checkpoints (
        name TEXT PRIMARY KEY,
        position BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
)];

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Follows the log with `handler` until `stop` turns true. Failures are
/// logged and retried from the last checkpoint; nothing is skipped.
pub async fn run_handler(
    store: Arc<dyn EventStore>,
    db: SqlDb,
    handler: Arc<dyn EventHandler>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        let result = tokio::select! {
            result = follow(&store, &db, handler.as_ref()) => result,
            _ = stop.changed() => return,
        };
        if let Err(e) = result {
            tracing::warn!(handler = handler.name(), error = %e, retry_in_ms = backoff.as_millis() as u64, "event handler failed; retrying from its checkpoint");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

async fn follow(store: &Arc<dyn EventStore>, db: &SqlDb, handler: &dyn EventHandler) -> Result<(), HandlerError> {
    let start = checkpoint_of(db, handler.name()).await?;
    let mut subscription = subscribe_all(store.clone(), start);
    loop {
        let batch = subscription.next_batch(BATCH).await?;
        apply_batch(db, handler, &batch).await?;
    }
}

/// Applies `events` (in order) and moves the checkpoint past the last, in one transaction.
pub async fn apply_batch(db: &SqlDb, handler: &dyn EventHandler, events: &[RecordedEvent]) -> Result<(), HandlerError> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    let mut statements = Vec::new();
    for event in events {
        statements.extend(handler.handle(event).await?);
    }
    statements.push(save_checkpoint(handler.name(), last.position));
    db.write(statements).await?;
    Ok(())
}
