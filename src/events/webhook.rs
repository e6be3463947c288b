use serde::{Deserialize, Serialize};

use super::DomainEvent;

/// A verified GitHub delivery, stored with the exact bytes received as the
/// event's payload (so its signature can be checked again later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookReceived {
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// `X-GitHub-Hook-ID` (`0` when GitHub did not send one).
    pub hook_id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository: Option<RepositoryRef>,
    pub sender: Option<SenderRef>,
    /// The `X-Hub-Signature-256` header as received (an HMAC, not a secret).
    pub signature: String,
    /// Which configured secret verified the signature; never the secret itself.
    pub secret: SecretSlot,
}

impl DomainEvent for WebhookReceived {
    const TYPE: &'static str = "WebhookReceived";
    const SCHEMA_VERSION: u32 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryRef {
    pub id: u64,
    pub full_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SenderRef {
    pub id: u64,
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSlot {
    Current,
    Previous,
}

impl SecretSlot {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretSlot::Current => "current",
            SecretSlot::Previous => "previous",
        }
    }
}
