//! A request to stop the agent on an issue or pull request (`{handle} stop`
//! in a new comment), on stream `stop-{stop_id}` (the id derived, as a
//! trigger's would be, from the comment): requested → answered. Not a
//! trigger: it starts nothing. What it stopped is recorded on the stopped
//! trigger's own stream ([`ConversationStopped`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DomainEvent, TriggerDetected};

/// A new comment asks to stop. Appended with `NoStream`: the first delivery
/// of the comment wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopRequested {
    pub stop_id: Uuid,
    /// The comment as it would have asked for the agent: where, who, what
    /// (its `trigger_id` is the stop id; no trigger stream has it).
    pub request: TriggerDetected,
}

impl DomainEvent for StopRequested {
    const TYPE: &'static str = "StopRequested";
    const SCHEMA_VERSION: u32 = 1;
}

/// What a stop came to. Final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopAnswered {
    pub stop_id: Uuid,
    /// The requester's permission, as GitHub reported it.
    pub permission: String,
    /// `denied` (not write or better: nothing is done or said), `stopped`,
    /// `nothing_running` or `cannot_stop` (the runtime has no way to).
    pub outcome: String,
    /// The triggers whose conversations were stopped.
    #[serde(default)]
    pub stopped: Vec<Uuid>,
    /// The reply, for `nothing_running` and `cannot_stop`.
    pub comment_id: Option<u64>,
}

impl DomainEvent for StopAnswered {
    const TYPE: &'static str = "StopAnswered";
    const SCHEMA_VERSION: u32 = 1;
}

/// On the trigger's stream: its conversation was stopped on the runtime at
/// someone's request. The run counts as ended (status `stopped`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationStopped {
    pub trigger_id: Uuid,
    pub conversation_id: String,
    /// Who asked (their login).
    pub stopped_by: String,
    pub stop_id: Uuid,
}

impl DomainEvent for ConversationStopped {
    const TYPE: &'static str = "ConversationStopped";
    const SCHEMA_VERSION: u32 = 1;
}
