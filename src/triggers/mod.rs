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
//! after the last attempt of a step: report_abandonment (the status comment says so)
//! `{handle} stop` ([`stop`]): stop-{id} ─► stop_conversation ─► ConversationStopped ─► post_summary
//! daily limits: start_conversation admitted on the day's stream, or TriggerRejected
//!   { reason: limit } ─► post_summary ([`limits`]); HOOKWISE_MAX_RUNNING(_PER_REPO): the start
//!   waits for a place in a running line ([`limits::running_turn`])
//! ```

pub mod classify;
mod event;
mod lifecycle;
pub mod limits;
pub mod settings;
mod state;
pub mod stop;
pub mod thread;

/// What the lifecycle's unit tests build their triggers from.
#[cfg(test)]
pub(crate) mod fixtures {
    use uuid::Uuid;

    use crate::events::{RepositoryRef, SenderRef, TriggerDetected, TriggerKind};

    /// A request of `kind` on issue `o/r#3`, by `alice`, saying `message`.
    pub fn detected(trigger_id: Uuid, kind: TriggerKind, message: &str) -> TriggerDetected {
        TriggerDetected {
            trigger_id,
            kind,
            repository: RepositoryRef { id: 1, full_name: "o/r".into() },
            installation_id: 2,
            number: 3,
            requester: SenderRef { id: 4, login: "alice".into(), kind: "User".into() },
            comment_id: Some(5),
            message: message.into(),
            title: None,
            head_branch: None,
            head_sha: None,
            path: None,
            line: None,
            thread_id: None,
            failed_workflows: Vec::new(),
            delivery_stream: "delivery-d".into(),
            delivery_id: Some("d".into()),
            delivery_position: 1,
            repository_settings: None,
        }
    }
}

pub use event::TriggerEvent;
pub use lifecycle::{
    is_over, next_step, status, AgentOutcome, StatusChange, Step, TriggerStatus, CONVERSATION_REFUSED, LIMIT,
};
pub use state::{FoldError, TriggerState};

#[cfg(test)]
mod tests;
