//! Operators' actions, on the `admin` stream: who asked for what, and when
//! (the event's own time).

use serde::{Deserialize, Serialize};

use super::DomainEvent;

/// A read model was rebuilt from the log and swapped in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadModelRebuilt {
    pub read_model: String,
    /// Events applied.
    pub events: u64,
    /// The log position the rebuilt tables reflected at the swap.
    pub position: u64,
    pub duration_ms: u64,
    /// `api` (the admin endpoint) or `cli`.
    pub requested_by: String,
}

impl DomainEvent for ReadModelRebuilt {
    const TYPE: &'static str = "ReadModelRebuilt";
    const SCHEMA_VERSION: u32 = 1;
}

/// A stretch of history was fed through a read model again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadModelReplayed {
    pub read_model: String,
    pub from: u64,
    pub to: u64,
    pub events: u64,
    pub requested_by: String,
}

impl DomainEvent for ReadModelReplayed {
    const TYPE: &'static str = "ReadModelReplayed";
    const SCHEMA_VERSION: u32 = 1;
}
