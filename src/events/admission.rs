//! The requests let start on one UTC day, on stream `admissions-{YYYY-MM-DD}`
//! (`HOOKWISE_MAX_PER_USER_PER_DAY`, `HOOKWISE_MAX_PER_REPO_PER_DAY`): the
//! process manager appends one [`RequestAdmitted`] before a trigger's
//! conversation is started, with the stream's expected version, so two
//! instances cannot both take the day's last place. The counts are the
//! stream's events ([`crate::triggers::limits::DailyAdmissions`]).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{derived_id, DomainEvent};

/// A trigger was let start its conversation, and counts against its
/// requester's and its repository's requests of the day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestAdmitted {
    pub trigger_id: Uuid,
    pub repository_id: u64,
    pub requester_id: u64,
}

impl DomainEvent for RequestAdmitted {
    const TYPE: &'static str = "RequestAdmitted";
    const SCHEMA_VERSION: u32 = 1;
}

impl RequestAdmitted {
    /// Once per trigger and day (`stream`): an admin's retry of an admitted
    /// trigger does not count again. The stream is part of it because event
    /// ids are unique across the whole log.
    pub fn event_id(&self, stream: &str) -> Uuid {
        derived_id(&["request-admitted", stream, &self.trigger_id.to_string()])
    }
}
