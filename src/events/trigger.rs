//! The life of one request to the agent, on stream `trigger-{trigger_id}`:
//! detected → permission → reaction → conversation → acknowledgement →
//! status changes → summary; or rejected, or abandoned after retries.
//! Every event carries the trigger id; times come from the log's
//! `recorded_at`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DomainEvent, RepositoryRef, SenderRef, SettingsInForce};

/// What asked for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// The trigger label was put on an issue.
    Label,
    /// A mention in a comment on an issue.
    IssueComment,
    /// A mention in a comment on a pull request's conversation.
    PrComment,
    /// A mention in an inline review comment.
    ReviewComment,
    /// A workflow run failed on a pull request's head (proactive starters).
    FailedWorkflow,
    /// A mention in the body of a submitted pull request review.
    PrReview,
    /// The trigger label was put on a pull request.
    PrLabel,
    /// An issue was assigned to the App's bot user.
    IssueAssigned,
    /// A pull request was assigned to the App's bot user.
    PrAssigned,
    /// A comment on an issue, edited to mention the handle.
    EditedIssueComment,
    /// A comment on a pull request's conversation, edited to mention the handle.
    EditedPrComment,
    /// An inline review comment, edited to mention the handle.
    EditedReviewComment,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Label => "label",
            TriggerKind::IssueComment => "issue_comment",
            TriggerKind::PrComment => "pr_comment",
            TriggerKind::ReviewComment => "review_comment",
            TriggerKind::FailedWorkflow => "failed_workflow",
            TriggerKind::PrReview => "pr_review",
            TriggerKind::PrLabel => "pr_label",
            TriggerKind::IssueAssigned => "issue_assigned",
            TriggerKind::PrAssigned => "pr_assigned",
            TriggerKind::EditedIssueComment => "edited_issue_comment",
            TriggerKind::EditedPrComment => "edited_pr_comment",
            TriggerKind::EditedReviewComment => "edited_review_comment",
        }
    }

    /// Whether the work happens on a pull request's head branch.
    pub fn is_pull_request(self) -> bool {
        !matches!(
            self,
            TriggerKind::Label
                | TriggerKind::IssueComment
                | TriggerKind::IssueAssigned
                | TriggerKind::EditedIssueComment
        )
    }

    /// Whether the request is an inline review comment (reacted to and replied to in its thread).
    pub fn is_inline(self) -> bool {
        matches!(self, TriggerKind::ReviewComment | TriggerKind::EditedReviewComment)
    }

    /// Whether the request is a comment on an issue's or pull request's conversation.
    pub fn is_conversation_comment(self) -> bool {
        matches!(
            self,
            TriggerKind::IssueComment
                | TriggerKind::PrComment
                | TriggerKind::EditedIssueComment
                | TriggerKind::EditedPrComment
        )
    }
}

/// A webhook asked for the agent. Appended with `NoStream`: the first
/// delivery that asks wins, every later one (redelivery, another hook,
/// replay) is a no-op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerDetected {
    pub trigger_id: Uuid,
    pub kind: TriggerKind,
    pub repository: RepositoryRef,
    pub installation_id: u64,
    /// The issue or pull request number.
    pub number: u64,
    /// Who asked.
    pub requester: SenderRef,
    /// The comment that asked (issue comment or review comment id; for a
    /// submitted review, the review's id).
    pub comment_id: Option<u64>,
    /// The request as the user wrote it (the comment or review body), or the
    /// standard request of a label or an assignment.
    pub message: String,
    /// The issue or pull request title, as the webhook carried it.
    pub title: Option<String>,
    /// Pull request head branch and sha, where known from the webhook.
    pub head_branch: Option<String>,
    pub head_sha: Option<String>,
    /// Inline comments: the file and line the comment is on.
    pub path: Option<String>,
    pub line: Option<u64>,
    /// Inline comments that are themselves replies: the thread's first comment,
    /// which replies must name (GitHub does not take replies to replies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<u64>,
    /// Failed runs: the workflows that failed.
    #[serde(default)]
    pub failed_workflows: Vec<String>,
    /// The delivery that asked.
    pub delivery_stream: String,
    /// Its GUID (absent in events written before; read from `delivery_stream` then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    pub delivery_position: u64,
    /// The repository's `.github/hookwise.yml` in force when this was
    /// decided; `None`: the operator's settings alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_settings: Option<SettingsInForce>,
}

impl DomainEvent for TriggerDetected {
    const TYPE: &'static str = "TriggerDetected";
    const SCHEMA_VERSION: u32 = 1;
}

/// The requester's permission on the repository, as GitHub reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionChecked {
    pub trigger_id: Uuid,
    pub login: String,
    /// `admin`, `maintain`, `write`, `triage`, `read` or `none`.
    pub permission: String,
    pub granted: bool,
    /// The rule that let the requester ask: `permission`, `allow` (named in
    /// the repository's `allow`) or `team:org/slug`; absent in older events
    /// and on a denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
}

impl DomainEvent for PermissionChecked {
    const TYPE: &'static str = "PermissionChecked";
    const SCHEMA_VERSION: u32 = 1;
}

/// Why a trigger will not start a conversation. Final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRejected {
    pub trigger_id: Uuid,
    /// A stable code: `permission_denied`, `installation_missing`,
    /// `installation_suspended`, `agent_not_configured`, `github_not_configured`,
    /// `conversation_refused`, `nothing_to_do`, `limit` (an operator's daily limit).
    pub reason: String,
    pub message: String,
}

impl DomainEvent for TriggerRejected {
    const TYPE: &'static str = "TriggerRejected";
    const SCHEMA_VERSION: u32 = 1;
}

/// The 👀 reaction is on the issue, comment or review comment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactionAdded {
    pub trigger_id: Uuid,
    /// `issue`, `issue_comment` or `review_comment`.
    pub target: String,
    pub reaction_id: Option<u64>,
}

impl DomainEvent for ReactionAdded {
    const TYPE: &'static str = "ReactionAdded";
    const SCHEMA_VERSION: u32 = 1;
}

/// About to ask the agent runtime for a conversation (recorded first: the
/// runtime cannot deduplicate, so after an unknown outcome the executor looks
/// for its marker before asking again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationRequested {
    pub trigger_id: Uuid,
    pub command_id: Uuid,
    pub repository: String,
    pub branch: Option<String>,
}

impl DomainEvent for ConversationRequested {
    const TYPE: &'static str = "ConversationRequested";
    const SCHEMA_VERSION: u32 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationStarted {
    pub trigger_id: Uuid,
    pub conversation_id: String,
    pub conversation_url: String,
}

impl DomainEvent for ConversationStarted {
    const TYPE: &'static str = "ConversationStarted";
    const SCHEMA_VERSION: u32 = 1;
}

/// The "I'm on it" reply is posted where the request was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcknowledgementPosted {
    pub trigger_id: Uuid,
    pub comment_id: u64,
    pub comment_url: Option<String>,
}

impl DomainEvent for AcknowledgementPosted {
    const TYPE: &'static str = "AcknowledgementPosted";
    const SCHEMA_VERSION: u32 = 1;
}

/// The agent reported a new state (`running`, `finished`, `error`, …).
/// Built with [`ConversationStatusChanged::new`], which caps the agent's texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationStatusChanged {
    pub trigger_id: Uuid,
    pub conversation_id: String,
    pub agent_state: String,
    /// At most [`MAX_AGENT_TEXT_CHARS`] characters (older logs: any length).
    pub reason: Option<String>,
    /// The agent's result, for the summary: only on the event that ends a run
    /// of the agent server or one seen by polling, at most
    /// [`MAX_AGENT_TEXT_CHARS`] characters. `None` for V0's states, whose
    /// messages are read where they are stored once, in the conversation's
    /// `AgentEventsReceived` (older logs copied it, at any length, into
    /// every state change).
    pub last_message: Option<String>,
}

impl DomainEvent for ConversationStatusChanged {
    const TYPE: &'static str = "ConversationStatusChanged";
    const SCHEMA_VERSION: u32 = 1;
}

impl ConversationStatusChanged {
    /// The event, with `reason` and `last_message` cut to [`MAX_AGENT_TEXT_CHARS`].
    pub fn new(
        trigger_id: Uuid,
        conversation_id: String,
        agent_state: String,
        reason: Option<String>,
        last_message: Option<String>,
    ) -> ConversationStatusChanged {
        let cap = |text: String| truncate_chars(text, MAX_AGENT_TEXT_CHARS);
        ConversationStatusChanged {
            trigger_id,
            conversation_id,
            agent_state,
            reason: reason.map(cap),
            last_message: last_message.map(cap),
        }
    }
}

/// The most of any agent text hookwise copies into a trigger event: a GitHub
/// comment holds at most 65,536 characters, so no reply can use more.
pub const MAX_AGENT_TEXT_CHARS: usize = 65_536;

/// What ends a text [`truncate_chars`] cut.
pub const TRUNCATION_MARKER: &str = "\n\n… (truncated by hookwise)";

/// `text` when it has at most `max_chars` characters; else its start, cut at
/// a character boundary, and [`TRUNCATION_MARKER`]: `max_chars` characters in all.
pub fn truncate_chars(mut text: String, max_chars: usize) -> String {
    if text.char_indices().nth(max_chars).is_none() {
        return text;
    }
    let marker = if TRUNCATION_MARKER.chars().count() <= max_chars { TRUNCATION_MARKER } else { "" };
    let keep = max_chars - marker.chars().count();
    let end = text.char_indices().nth(keep).map_or(text.len(), |(at, _)| at);
    text.truncate(end);
    text.push_str(marker);
    text
}

/// The agent's result (or a short error reply) is posted. Final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryPosted {
    pub trigger_id: Uuid,
    pub comment_id: u64,
    /// `finished` (a summary) or the failure state (`error`, `stopped`, …).
    pub outcome: String,
    /// Whether it was written into the status comment (`HOOKWISE_REPLY_STYLE=edit`)
    /// rather than posted as a comment of its own (absent before: posted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
}

impl DomainEvent for SummaryPosted {
    const TYPE: &'static str = "SummaryPosted";
    const SCHEMA_VERSION: u32 = 1;
}

/// One attempt at a step failed; it will be tried again at `retry_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFailed {
    pub trigger_id: Uuid,
    pub step: String,
    pub attempt: u32,
    pub error: String,
    /// Microseconds since the Unix epoch.
    pub retry_at_micros: i64,
}

impl DomainEvent for StepFailed {
    const TYPE: &'static str = "StepFailed";
    const SCHEMA_VERSION: u32 = 1;
}

/// A step failed its last attempt. Retryable by an admin (`TriggerRetried`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerAbandoned {
    pub trigger_id: Uuid,
    pub step: String,
    pub error: String,
    pub attempts: u32,
}

impl DomainEvent for TriggerAbandoned {
    const TYPE: &'static str = "TriggerAbandoned";
    const SCHEMA_VERSION: u32 = 1;
}

/// Where the request was made, hookwise said why it gave up: the status
/// comment edited to name the step and the error, or a reply of its own.
/// Once per abandonment (an admin's retry opens the way for the next one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbandonmentReported {
    pub trigger_id: Uuid,
    /// The abandoned step.
    pub step: String,
    pub comment_id: u64,
    /// The status comment edited (`true`) or a reply posted.
    pub edited: bool,
}

impl DomainEvent for AbandonmentReported {
    const TYPE: &'static str = "AbandonmentReported";
    const SCHEMA_VERSION: u32 = 1;
}

/// An admin asked to run an abandoned trigger's failed step again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRetried {
    pub trigger_id: Uuid,
    pub step: String,
    /// Which retry this is (1 for the first), so each retry is its own command.
    pub retry: u32,
    pub requested_by: String,
    /// The status the trigger had before it was abandoned, which it resumes
    /// (absent in retries recorded before it existed: `detected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumes: Option<String>,
}

impl DomainEvent for TriggerRetried {
    const TYPE: &'static str = "TriggerRetried";
    const SCHEMA_VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_at_a_character_boundary_with_the_marker() {
        assert_eq!(truncate_chars("short".into(), 100), "short");
        let exact = "é".repeat(100);
        assert_eq!(truncate_chars(exact.clone(), 100), exact);
        let cut = truncate_chars("é".repeat(101), 100);
        assert_eq!(cut.chars().count(), 100);
        assert!(cut.ends_with(TRUNCATION_MARKER), "{cut}");
        assert!(cut.starts_with("éé"));
        // Too small for the marker: a plain cut.
        assert_eq!(truncate_chars("abcdef".into(), 3), "abc");
    }

    #[test]
    fn a_status_change_keeps_at_most_the_cap_of_the_agents_texts() {
        let long = "x".repeat(MAX_AGENT_TEXT_CHARS + 10);
        let changed =
            ConversationStatusChanged::new(Uuid::nil(), "c".into(), "finished".into(), Some(long.clone()), Some(long));
        for text in [&changed.reason, &changed.last_message] {
            let text = text.as_deref().unwrap_or_default();
            assert_eq!(text.chars().count(), MAX_AGENT_TEXT_CHARS);
            assert!(text.ends_with(TRUNCATION_MARKER));
        }
    }
}
