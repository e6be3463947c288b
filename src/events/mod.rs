//! The domain event catalogue: what each event means, its stream, and how a
//! stored event (of any schema version) is read back.

pub mod admin;
mod admission;
mod agent;
pub mod pull_request;
mod reconcile;
mod repository;
mod stop;
mod thread;
mod trigger;
mod webhook;

pub use admission::RequestAdmitted;
pub use agent::{agent_server_event_id, AgentEventsReceived, AgentOperation, AgentServerEventReceived};
pub use reconcile::ReconciliationCompleted;
pub use repository::{RepositorySettings, RepositorySettingsRead, SettingsInForce};
pub use stop::{ConversationStopped, StopAnswered, StopRequested};
pub use thread::{QueuedNoticePosted, ThreadRequestQueued, ThreadRequestReleased};
pub use trigger::{truncate_chars, MAX_AGENT_TEXT_CHARS, TRUNCATION_MARKER};
pub use trigger::{
    AbandonmentReported, AcknowledgementPosted, ConversationRequested, ConversationStarted, ConversationStatusChanged,
    PermissionChecked, ReactionAdded, StepFailed, SummaryPosted, TriggerAbandoned, TriggerDetected, TriggerKind,
    TriggerRejected, TriggerRetried,
};
pub use webhook::{RepositoryRef, SecretSlot, SenderRef, WebhookReceived};

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::store::{NewEvent, RecordedEvent};

/// Namespace for every UUIDv5 hookwise derives (event ids, trigger ids, command ids),
/// so that the same cause always yields the same id.
pub const HOOKWISE_NAMESPACE: Uuid = Uuid::from_u128(0x6f0c_1d4e_8a57_4c1b_9a35_4e0b_5d2a_71c3);

/// A UUIDv5 of `parts` joined by a separator that cannot appear inside them
/// unescaped, under the hookwise namespace.
pub fn derived_id(parts: &[&str]) -> Uuid {
    let name = parts.join("\u{1f}");
    Uuid::new_v5(&HOOKWISE_NAMESPACE, name.as_bytes())
}

/// A domain event type: its name in the log, its current schema version, and
/// how older versions are upcast to the current one.
pub trait DomainEvent: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    const SCHEMA_VERSION: u32;

    /// Rewrites the JSON of an older schema version into the current shape.
    /// The default accepts only the current version.
    fn upcast(schema_version: u32, data: serde_json::Value) -> Result<serde_json::Value, DecodeError> {
        if schema_version == Self::SCHEMA_VERSION {
            Ok(data)
        } else {
            Err(DecodeError::UnknownSchemaVersion { event_type: Self::TYPE, schema_version })
        }
    }

    fn to_new_event(&self, event_id: Uuid, payload: Option<bytes::Bytes>) -> Result<NewEvent, serde_json::Error> {
        Ok(NewEvent {
            event_id,
            event_type: Self::TYPE.to_owned(),
            schema_version: Self::SCHEMA_VERSION,
            data: serde_json::to_vec(self)?,
            payload,
        })
    }

    /// Reads a recorded event of this type, upcasting older schema versions.
    fn decode(event: &RecordedEvent) -> Result<Self, DecodeError> {
        if event.event_type != Self::TYPE {
            return Err(DecodeError::WrongType { expected: Self::TYPE, found: event.event_type.clone() });
        }
        // The current version reads straight into the type; only older ones
        // go through a JSON tree to be upcast.
        if event.schema_version == Self::SCHEMA_VERSION {
            return Ok(serde_json::from_slice(&event.data)?);
        }
        let value: serde_json::Value = serde_json::from_slice(&event.data)?;
        let current = Self::upcast(event.schema_version, value)?;
        Ok(serde_json::from_value(current)?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected an event of type {expected}, found {found}")]
    WrongType { expected: &'static str, found: String },
    #[error("{event_type} has no schema version {schema_version}")]
    UnknownSchemaVersion { event_type: &'static str, schema_version: u32 },
    #[error("event data is not valid: {0}")]
    Json(#[from] serde_json::Error),
}

/// Stream names, in one place so that every writer and reader agrees.
pub mod streams {
    use uuid::Uuid;

    /// One stream per delivery GUID: the hook id that carried it does not
    /// split it (logs written before named it `delivery-{hook_id}-{guid}`;
    /// the SQL stores' migrations rename those, see `docs/decisions/delivery-identity.md`).
    pub fn delivery(delivery_id: &str) -> String {
        format!("delivery-{delivery_id}")
    }

    /// Every trigger stream's name starts with this.
    pub const TRIGGER_PREFIX: &str = "trigger-";

    pub fn trigger(trigger_id: Uuid) -> String {
        format!("{TRIGGER_PREFIX}{trigger_id}")
    }

    /// Every stop stream's name starts with this.
    pub const STOP_PREFIX: &str = "stop-";

    /// A request to stop the agent (`{handle} stop`), by its id.
    pub fn stop(stop_id: Uuid) -> String {
        format!("{STOP_PREFIX}{stop_id}")
    }

    /// Every thread stream's name starts with this.
    pub const THREAD_PREFIX: &str = "thread-";

    /// The requests on one issue or pull request, in the order they may run
    /// (`ThreadRequestQueued`, `ThreadRequestReleased`).
    pub fn thread(repository_id: u64, number: u64) -> String {
        format!("{THREAD_PREFIX}{repository_id}-{number}")
    }

    pub fn conversation(conversation_id: &str) -> String {
        format!("conversation-{conversation_id}")
    }

    /// A pull request's own events (`PullRequestEnriched`).
    pub fn pull_request(repository_id: u64, number: u64) -> String {
        format!("{PULL_REQUEST_PREFIX}{repository_id}-{number}")
    }

    /// Every pull request stream's name starts with this.
    pub const PULL_REQUEST_PREFIX: &str = "pr-";

    pub fn installation(installation_id: u64) -> String {
        format!("installation-{installation_id}")
    }

    /// Every repository stream's name starts with this.
    pub const REPOSITORY_PREFIX: &str = "repository-";

    /// A repository's settings as read (`RepositorySettingsRead`).
    pub fn repository(repository_id: u64) -> String {
        format!("{REPOSITORY_PREFIX}{repository_id}")
    }

    /// The requests let start on one UTC day (`RequestAdmitted`), `day` as `YYYY-MM-DD`.
    pub fn admissions(day: &str) -> String {
        format!("admissions-{day}")
    }

    /// The proactive suggestions let post on one pull request
    /// (`RequestAdmitted`, `HOOKWISE_MAX_PROACTIVE_PER_PR`).
    pub fn proactive(repository_id: u64, number: u64) -> String {
        format!("proactive-{repository_id}-{number}")
    }

    /// Every running-limit line's name starts with this.
    pub const RUNNING_PREFIX: &str = "running-";
    /// The line of conversations running at once (`HOOKWISE_MAX_RUNNING`;
    /// `ThreadRequestQueued`, `ThreadRequestReleased`).
    pub const RUNNING_ALL: &str = "running-all";
    /// The same, per repository (`HOOKWISE_MAX_RUNNING_PER_REPO`).
    pub fn running_repo(repository_id: u64) -> String {
        format!("{RUNNING_PREFIX}repo-{repository_id}")
    }

    /// Operators' actions (rebuilds, replays, retries).
    pub const ADMIN: &str = "admin";

    /// Runs of the missed-delivery reconciliation.
    pub const RECONCILE: &str = "reconcile";
}
