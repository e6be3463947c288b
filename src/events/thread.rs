//! The requests on one issue or pull request, in the order they may run, on
//! stream `thread-{repository_id}-{number}` (`HOOKWISE_PER_THREAD=queue`): a
//! trigger about to start a conversation joins ([`ThreadRequestQueued`]),
//! and leaves when it ends ([`ThreadRequestReleased`]). Only the first in
//! line runs. Appended by the process manager with ids derived from the
//! trigger and its admin retries ([`ThreadRequestQueued::event_id`]), so a
//! replay or a second process appends nothing new.
//!
//! [`QueuedNoticePosted`] is the trigger's side: it is on `trigger-{id}`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{derived_id, DomainEvent};

/// A trigger whose next step is to start a conversation joined the line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadRequestQueued {
    pub trigger_id: Uuid,
    /// The trigger's admin retries when it joined: a trigger abandoned (and
    /// so released) and retried into its start again joins again, at the end.
    pub retry: u32,
}

impl DomainEvent for ThreadRequestQueued {
    const TYPE: &'static str = "ThreadRequestQueued";
    const SCHEMA_VERSION: u32 = 1;
}

impl ThreadRequestQueued {
    /// The same join always has the same id (the store makes a second append a no-op).
    pub fn event_id(&self) -> Uuid {
        derived_id(&["thread-queued", &self.trigger_id.to_string(), &self.retry.to_string()])
    }
}

/// A trigger in the line ended, and the next one may start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadRequestReleased {
    pub trigger_id: Uuid,
    /// As in the [`ThreadRequestQueued`] it ends.
    pub retry: u32,
    /// `summary_posted`, `stopped`, `rejected` or `abandoned`.
    pub reason: String,
}

impl DomainEvent for ThreadRequestReleased {
    const TYPE: &'static str = "ThreadRequestReleased";
    const SCHEMA_VERSION: u32 = 1;
}

impl ThreadRequestReleased {
    pub fn event_id(&self) -> Uuid {
        derived_id(&["thread-released", &self.trigger_id.to_string(), &self.retry.to_string()])
    }
}

/// On the trigger's stream: the short "Queued behind …" reply is posted
/// where a request that must wait was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedNoticePosted {
    pub trigger_id: Uuid,
    /// The trigger it waits for (the one running when the notice was posted).
    pub behind: Uuid,
    pub comment_id: u64,
    pub comment_url: Option<String>,
}

impl DomainEvent for QueuedNoticePosted {
    const TYPE: &'static str = "QueuedNoticePosted";
    const SCHEMA_VERSION: u32 = 1;
}
