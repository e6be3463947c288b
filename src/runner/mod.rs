//! Follows the log for [`EventHandler`]s (read models, the process manager,
//! forwarding): catch up from their checkpoints, then follow. Each batch's
//! statements and the new checkpoints commit in one transaction, so a crash
//! can neither skip an event nor apply it twice.
//!
//! Imports run one way: projections, the process manager and forwarding use
//! this module; it uses none of them.

mod checkpoint;
mod error;
mod follow;

use async_trait::async_trait;

pub use checkpoint::{
    checkpoint_of, claim_checkpoint, is_checkpoint_conflict, move_checkpoint, save_checkpoint, Checkpoint,
    CHECKPOINT_MIGRATIONS,
};
pub use error::HandlerError;
pub use follow::run_handlers;

use crate::sql::{coalesce_inserts, Migration, Statement};
use crate::store::RecordedEvent;

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

    /// The statements of one batch of this handler's, as few as they can be
    /// (they run in the same transaction, after its checkpoint's). By
    /// default, runs of the same insert-or-ignore are merged into one.
    fn compact(&self, statements: Vec<Statement>) -> Vec<Statement> {
        coalesce_inserts(statements)
    }

    /// Called once a batch this handler applied has committed: what its
    /// statements wrote is visible now (the process manager wakes the
    /// executor here rather than leaving it to poll).
    fn committed(&self) {}
}
