//! The trigger lifecycle, in one place: which deliveries ask for the agent
//! ([`classify`]), the events of a trigger's stream as one typed enum
//! ([`TriggerEvent`]), what they add up to ([`TriggerState::fold`]), which
//! step comes next ([`next_step`]) and the status people see ([`status`],
//! and [`StatusChange`] for read models that keep it in SQL).
//!
//! Everything here is pure: the process manager folds and asks for the next
//! step, the executor asks the state whether a step is already done, and the
//! read models match on [`TriggerEvent`]. No event-type string outside
//! `src/events/`.
//!
//! ```text
//! TriggerDetected ─► check_permission ─► add_reaction ─► start_conversation ─►
//!   post_acknowledgement ─► follow_conversation ─► post_summary
//!   (failed workflow runs: post_suggestion)
//! any step: StepFailed … TriggerAbandoned ─(admin)─► TriggerRetried ─► that step again
//! HOOKWISE_PER_THREAD=queue: start_conversation waits its turn on the issue or PR
//!   ([`thread`]; post_queued_notice meanwhile)
//! daily limits: start_conversation admitted on the day's stream, or TriggerRejected
//!   { reason: limit } ─► post_summary ([`limits`]); HOOKWISE_MAX_RUNNING(_PER_REPO): the start
//!   waits for a place in a running line ([`limits::running_turn`])
//! ```

pub mod classify;
mod event;
mod lifecycle;
pub mod limits;
mod state;
pub mod thread;

pub use event::TriggerEvent;
pub use lifecycle::{next_step, status, AgentOutcome, StatusChange, Step, TriggerStatus, CONVERSATION_REFUSED, LIMIT};
pub use state::{FoldError, TriggerState};

#[cfg(test)]
mod tests;
