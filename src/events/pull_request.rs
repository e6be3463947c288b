//! Pull-request figures that the webhooks do not carry, fetched from the
//! GitHub API when a PR closes (by the executor, as a command like any
//! other) and recorded here so that a replay never calls GitHub.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DomainEvent;

/// The authoritative figures of a closed PR, counted once over every page of
/// the API's answers (commits and comments deduplicated by id). Stream:
/// `pr-{repository_id}-{number}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestEnriched {
    pub repository_id: u64,
    /// `owner/name`.
    pub repository: String,
    pub number: u64,
    pub commits: u64,
    /// Commits whose author name is `openhands` or whose author login contains `openhands`.
    pub openhands_commits: u64,
    pub changed_files: u64,
    pub additions: u64,
    pub deletions: u64,
    /// Review comments plus non-empty review bodies.
    pub review_comments: u64,
    pub openhands_review_comments: u64,
    pub general_comments: u64,
    pub openhands_general_comments: u64,
    /// Distinct reviewers' logins.
    pub reviewers: Vec<String>,
}

impl DomainEvent for PullRequestEnriched {
    const TYPE: &'static str = "PullRequestEnriched";
    const SCHEMA_VERSION: u32 = 1;
}

/// The data collector's rule: a login containing `openhands`, or a commit
/// author named `openhands` (case-insensitive).
pub fn is_openhands(login: Option<&str>, author_name: Option<&str>) -> bool {
    login.is_some_and(|l| l.to_ascii_lowercase().contains("openhands"))
        || author_name.is_some_and(|n| n.eq_ignore_ascii_case("openhands"))
}

/// One attempt at fetching a closed PR's figures failed; it is tried again
/// at `retry_at_micros`. On the PR's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentFailed {
    /// The closing's subject id (see `process::pull_request_subject`).
    pub subject_id: Uuid,
    pub attempt: u32,
    pub error: String,
    /// Microseconds since the Unix epoch.
    pub retry_at_micros: i64,
}

impl DomainEvent for EnrichmentFailed {
    const TYPE: &'static str = "EnrichmentFailed";
    const SCHEMA_VERSION: u32 = 1;
}

/// Fetching a closed PR's figures failed its last attempt. Retryable by an
/// admin (`EnrichmentRetried`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentAbandoned {
    pub subject_id: Uuid,
    pub error: String,
    pub attempts: u32,
}

impl DomainEvent for EnrichmentAbandoned {
    const TYPE: &'static str = "EnrichmentAbandoned";
    const SCHEMA_VERSION: u32 = 1;
}

/// An admin asked to fetch an abandoned enrichment again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichmentRetried {
    pub subject_id: Uuid,
    /// Which retry of this closing's enrichment (1 for the first).
    pub retry: u32,
    pub requested_by: String,
}

impl DomainEvent for EnrichmentRetried {
    const TYPE: &'static str = "EnrichmentRetried";
    const SCHEMA_VERSION: u32 = 1;
}
