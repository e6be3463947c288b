//! Each handler's checkpoint: the last log position it applied, moved in the
//! same transaction as the statements that applied the events up to it.

use crate::sql::{Migration, SqlDb, SqlError, Statement};
use crate::sql_params;
use crate::store::Position;

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

/// The guard of [`move_checkpoint`] fired: the insert into
/// `checkpoint_conflicts` violated its `CHECK`, the only one on the SQL side.
pub fn is_checkpoint_conflict(e: &SqlError) -> bool {
    e.is_check_violation()
}
