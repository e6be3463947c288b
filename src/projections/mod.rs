//! Everything that follows the log from a checkpoint: read models, and the
//! process manager, which uses the same runner.

pub mod runner;

pub use runner::{checkpoint_of, run_handler, EventHandler, HandlerError, CHECKPOINT_MIGRATIONS};
