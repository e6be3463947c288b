use serde::{Deserialize, Serialize};

use super::DomainEvent;

/// One run of `hookwise reconcile` (or of the periodic task), on the
/// `reconcile` stream: what GitHub listed and what was asked again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconciliationCompleted {
    /// RFC 3339.
    pub started_at: String,
    /// How far back the run looked.
    pub since_seconds: u64,
    /// Delivery attempts GitHub listed inside the window.
    pub attempts_listed: u64,
    /// Distinct deliveries (GUIDs) among them.
    pub deliveries: u64,
    /// Deliveries with no successful attempt that are in the log all the same (skipped).
    pub already_in_log: u64,
    /// Deliveries with no successful attempt and not in the log.
    pub missing: u64,
    /// Redeliveries GitHub accepted.
    pub redelivered: u64,
    /// Redeliveries that failed, or were not asked for because the run stopped early.
    pub failed: u64,
    /// Why the run stopped early (listing failed, rate limit), if it did.
    pub error: Option<String>,
}

impl DomainEvent for ReconciliationCompleted {
    const TYPE: &'static str = "ReconciliationCompleted";
    const SCHEMA_VERSION: u32 = 1;
}
