//! Batched forwarding of the log to HTTP sinks.
//!
//! Each sink follows the log from its own durable checkpoint (`forward:<name>`
//! in the `checkpoints` table), gathers events into a batch (a JSON array),
//! and POSTs it when the batch reaches `max_batch_bytes` or when its oldest
//! event has waited `max_batch_age`. One batch is in flight per sink, retried
//! with exponential backoff and jitter until the sink answers 2xx; only then
//! does the checkpoint move. Nothing is dropped: a sink that keeps failing is
//! marked failing and resumes from its checkpoint when it recovers, also
//! after a restart. Design notes: docs/decisions/forwarding.md.

mod batch;
mod sink;

use std::time::Duration;

pub use batch::{batch_id, encode_event, sign_batch};
pub use sink::{run_sink, SinkState, SinkStatus, SinkView};

/// Largest batch body, unless a single event is larger (it then goes alone).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;
/// How long the oldest pending event may wait before its batch is sent.
pub const DEFAULT_MAX_BATCH_AGE: Duration = Duration::from_secs(5);

/// One configured sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// `[A-Za-z0-9_-]{1,64}`: names the checkpoint, the metrics series and the
    /// `HOOKWISE_FORWARD_EVENTS_<NAME>` variable.
    pub name: String,
    pub url: reqwest::Url,
    /// Event types to forward; `None` forwards every event.
    pub event_types: Option<Vec<String>>,
}

impl SinkConfig {
    pub fn accepts(&self, event_type: &str) -> bool {
        self.event_types.as_ref().is_none_or(|types| types.iter().any(|t| t == event_type))
    }

    /// The name of this sink's row in the `checkpoints` table.
    pub fn checkpoint_name(&self) -> String {
        format!("forward:{}", self.name)
    }

    /// The environment variable that restricts this sink's event types.
    pub fn events_variable(name: &str) -> String {
        format!("HOOKWISE_FORWARD_EVENTS_{}", name.to_ascii_uppercase().replace('-', "_"))
    }
}

/// The key that signs every batch. Never printed.
#[derive(Clone)]
pub struct ForwardSecret(pub(crate) Vec<u8>);

impl ForwardSecret {
    pub fn new(secret: &str) -> Option<Self> {
        (!secret.is_empty()).then(|| ForwardSecret(secret.as_bytes().to_vec()))
    }
}

impl std::fmt::Debug for ForwardSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardSecret(<redacted>)")
    }
}

/// Forwarding configuration. The limits are fields so tests can shrink them.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    pub sinks: Vec<SinkConfig>,
    pub secret: Option<ForwardSecret>,
    pub max_batch_bytes: usize,
    pub max_batch_age: Duration,
    /// Per POST, connection included.
    pub request_timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Consecutive failed attempts after which a sink is marked failing.
    pub failing_after: u32,
    /// How long shutdown waits for the last batches.
    pub shutdown_grace: Duration,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        ForwardSettings {
            sinks: Vec::new(),
            secret: None,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_batch_age: DEFAULT_MAX_BATCH_AGE,
            request_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            failing_after: 3,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardConfigError {
    #[error("HOOKWISE_FORWARD: `{0}` is not name=URL")]
    NotNameEqualsUrl(String),
    #[error("HOOKWISE_FORWARD: sink name `{0}` must be 1-64 characters of A-Z a-z 0-9 _ -")]
    BadName(String),
    #[error("HOOKWISE_FORWARD: sink `{0}` needs an http:// or https:// URL")]
    BadUrl(String),
    #[error("HOOKWISE_FORWARD: sink `{0}` is configured twice")]
    Duplicate(String),
    #[error("HOOKWISE_FORWARD_SECRET is required (and must not be empty) when sinks are configured")]
    MissingSecret,
}

impl ForwardSettings {
    /// Parses `name=URL` specs (from `--forward` or `HOOKWISE_FORWARD`),
    /// reading each sink's event filter with `env`.
    pub fn parse(
        specs: &[String],
        secret: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ForwardConfigError> {
        let mut sinks: Vec<SinkConfig> = Vec::new();
        for spec in specs.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (name, url) = spec.split_once('=').ok_or_else(|| ForwardConfigError::NotNameEqualsUrl(redact(spec)))?;
            let name = name.trim();
            let valid_name = (1..=64).contains(&name.len())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(ForwardConfigError::BadName(name.chars().take(64).collect()));
            }
            let url = reqwest::Url::parse(url.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| ForwardConfigError::BadUrl(name.to_owned()))?;
            if sinks.iter().any(|s| s.name.eq_ignore_ascii_case(name)) {
                return Err(ForwardConfigError::Duplicate(name.to_owned()));
            }
            let event_types = env(&SinkConfig::events_variable(name)).map(|types| {
                types.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect::<Vec<_>>()
            });
            sinks.push(SinkConfig { name: name.to_owned(), url, event_types });
        }
        let secret = secret.and_then(ForwardSecret::new);
        if !sinks.is_empty() && secret.is_none() {
            return Err(ForwardConfigError::MissingSecret);
        }
        Ok(ForwardSettings { sinks, secret, ..ForwardSettings::default() })
    }
}

/// A spec may carry credentials in its URL: show only what precedes `=`.
fn redact(spec: &str) -> String {
    if spec.contains("://") {
        "<url>".to_owned()
    } else {
        spec.chars().take(64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_sinks_with_event_filters() {
        let env = |key: &str| (key == "HOOKWISE_FORWARD_EVENTS_AUDIT_LAKE").then(|| "WebhookReceived, X".to_owned());
        let settings =
            ForwardSettings::parse(&specs(&["audit-lake=https://a.example/in", "b=http://b:9/x"]), Some("s"), env)
                .unwrap();
        assert_eq!(settings.sinks.len(), 2);
        assert_eq!(settings.sinks[0].event_types, Some(vec!["WebhookReceived".to_owned(), "X".to_owned()]));
        assert!(settings.sinks[0].accepts("X") && !settings.sinks[0].accepts("Y"));
        assert!(settings.sinks[1].accepts("anything"));
        assert_eq!(settings.sinks[1].checkpoint_name(), "forward:b");
    }

    #[test]
    fn rejects_bad_specs() {
        let none = |_: &str| None;
        let parse = |s: &[&str], secret| ForwardSettings::parse(&specs(s), secret, none);
        assert!(matches!(parse(&["nourl"], Some("s")), Err(ForwardConfigError::NotNameEqualsUrl(_))));
        assert!(matches!(parse(&["a b=http://x"], Some("s")), Err(ForwardConfigError::BadName(_))));
        assert!(matches!(parse(&["a=ftp://x"], Some("s")), Err(ForwardConfigError::BadUrl(_))));
        assert!(matches!(parse(&["a=http://x", "A=http://y"], Some("s")), Err(ForwardConfigError::Duplicate(_))));
        assert_eq!(parse(&["a=http://x"], None).unwrap_err(), ForwardConfigError::MissingSecret);
        assert_eq!(parse(&["a=http://x"], Some("")).unwrap_err(), ForwardConfigError::MissingSecret);
        assert!(parse(&[], None).unwrap().sinks.is_empty());
    }
}
