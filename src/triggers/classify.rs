//! Which deliveries ask for the agent (REFERENCE.md's table). Pure: the same
//! delivery always gives the same answer, so a replay decides the same.

use serde::Deserialize;

use crate::events::{derived_id, SenderRef, TriggerDetected, TriggerKind, WebhookReceived};
use crate::github::prefilter::may_contain;

/// Hidden in every comment hookwise writes: a body that carries it never triggers.
pub const MARKER_PREFIX: &str = "<!-- hookwise:";

/// What counts as asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRules {
    /// The issue label that asks (`openhands`), compared exactly.
    pub label: String,
    /// The handle whose mention asks (`@openhands`), compared case-insensitively.
    pub mention: String,
    /// Act on failed workflow runs of pull requests.
    pub proactive: bool,
}

impl Default for TriggerRules {
    fn default() -> Self {
        TriggerRules { label: "openhands".into(), mention: "@openhands".into(), proactive: false }
    }
}

/// Whether `text` mentions `handle`: case-insensitive; the handle starts the
/// text or follows a character that is neither a word character nor `@`, and
/// is not followed by a word character or `-`. So `(@openhands)`,
/// `@OpenHands!` and `@openhands.` match; `user@openhands.com` and
/// `@openhands-agent` do not.
pub fn mentions(text: &str, handle: &str) -> bool {
    if handle.is_empty() {
        return false;
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let (text_bytes, handle_bytes) = (text.as_bytes(), handle.as_bytes());
    (0..text_bytes.len().saturating_sub(handle_bytes.len() - 1)).any(|start| {
        let end = start + handle_bytes.len();
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return false;
        }
        if !text_bytes[start..end].eq_ignore_ascii_case(handle_bytes) {
            return false;
        }
        let before_ok = text[..start].chars().next_back().is_none_or(|c| !is_word(c) && c != '@');
        let after_ok = text[end..].chars().next().is_none_or(|c| !is_word(c) && c != '-');
        before_ok && after_ok
    })
}

#[derive(Deserialize)]
struct Label {
    name: String,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    title: Option<String>,
    updated_at: Option<String>,
    /// Present (whatever its value) on a pull request's conversation.
    pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Comment {
    id: u64,
    body: Option<String>,
    path: Option<String>,
    line: Option<u64>,
    original_line: Option<u64>,
    in_reply_to_id: Option<u64>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    branch: Option<String>,
    sha: Option<String>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    title: Option<String>,
    head: Head,
}

#[derive(Deserialize)]
struct RunPullRequest {
    number: u64,
    head: Head,
}

#[derive(Deserialize)]
struct WorkflowRun {
    name: Option<String>,
    head_sha: String,
    head_branch: Option<String>,
    conclusion: Option<String>,
    #[serde(default)]
    pull_requests: Vec<RunPullRequest>,
}

#[derive(Deserialize)]
struct Payload {
    label: Option<Label>,
    issue: Option<Issue>,
    comment: Option<Comment>,
    pull_request: Option<PullRequest>,
    workflow_run: Option<WorkflowRun>,
}

/// The trigger `received` asks for, if any. `payload` is the delivery's body.
pub fn classify(
    received: &WebhookReceived,
    payload: &[u8],
    delivery_stream: &str,
    delivery_position: u64,
    rules: &TriggerRules,
) -> Option<TriggerDetected> {
    let (repository, installation_id, sender) =
        (received.repository.clone()?, received.installation_id?, received.sender.clone()?);
    // Never act for a bot, the App itself included.
    if sender.kind.eq_ignore_ascii_case("bot") || sender.login.ends_with("[bot]") {
        return None;
    }
    let action = received.action.as_deref()?;
    // Only four kinds of delivery can ask, and a comment only by naming the
    // handle: everything else is answered without parsing the body.
    let may_ask = match (received.event.as_str(), action) {
        ("issues", "labeled") => true,
        ("issue_comment" | "pull_request_review_comment", "created") => may_contain(payload, &rules.mention),
        ("workflow_run", "completed") => rules.proactive,
        _ => false,
    };
    if !may_ask {
        return None;
    }
    let payload: Payload = serde_json::from_slice(payload).ok()?;
    let base = |kind, trigger_id, number, requester: SenderRef, message: String| TriggerDetected {
        trigger_id,
        kind,
        repository: repository.clone(),
        installation_id,
        number,
        requester,
        comment_id: None,
        message,
        title: None,
        head_branch: None,
        head_sha: None,
        path: None,
        line: None,
        thread_id: None,
        failed_workflows: Vec::new(),
        delivery_stream: delivery_stream.to_owned(),
        delivery_id: Some(received.delivery_id.clone()),
        delivery_position,
    };
    let repo_id = repository.id.to_string();

    match (received.event.as_str(), action) {
        ("issues", "labeled") => {
            let (label, issue) = (payload.label?, payload.issue?);
            if label.name != rules.label || issue.pull_request.is_some() {
                return None;
            }
            // The same labelling seen through several hooks is one request;
            // labelling again later (a new `updated_at`) is a new one.
            let stamp = issue.updated_at.unwrap_or_else(|| received.delivery_id.clone());
            let id = derived_id(&["label", &repo_id, &issue.number.to_string(), &stamp]);
            let message = format!("Please fix issue number #{}.", issue.number);
            Some(TriggerDetected { title: issue.title, ..base(TriggerKind::Label, id, issue.number, sender, message) })
        }
        ("issue_comment", "created") => {
            let (issue, comment) = (payload.issue?, payload.comment?);
            let body = comment.body.filter(|b| mentions(b, &rules.mention) && !b.contains(MARKER_PREFIX))?;
            let kind = if issue.pull_request.is_some() { TriggerKind::PrComment } else { TriggerKind::IssueComment };
            let id = derived_id(&["comment", &comment.id.to_string()]);
            Some(TriggerDetected {
                comment_id: Some(comment.id),
                title: issue.title,
                ..base(kind, id, issue.number, sender, body)
            })
        }
        ("pull_request_review_comment", "created") => {
            let (pull, comment) = (payload.pull_request?, payload.comment?);
            let body = comment.body.filter(|b| mentions(b, &rules.mention) && !b.contains(MARKER_PREFIX))?;
            let id = derived_id(&["review_comment", &comment.id.to_string()]);
            Some(TriggerDetected {
                comment_id: Some(comment.id),
                title: pull.title,
                head_branch: pull.head.branch,
                head_sha: pull.head.sha,
                path: comment.path,
                line: comment.line.or(comment.original_line),
                thread_id: comment.in_reply_to_id,
                ..base(TriggerKind::ReviewComment, id, pull.number, sender, body)
            })
        }
        ("workflow_run", "completed") if rules.proactive => {
            let run = payload.workflow_run?;
            if run.conclusion.as_deref() != Some("failure") {
                return None;
            }
            let pull = run.pull_requests.into_iter().find(|p| p.head.sha.as_deref() == Some(run.head_sha.as_str()))?;
            let number = pull.number.to_string();
            let id = derived_id(&["failed_run", &repo_id, &number, &run.head_sha]);
            let message = "A workflow run failed on this pull request.".to_owned();
            Some(TriggerDetected {
                head_branch: pull.head.branch.or(run.head_branch),
                head_sha: Some(run.head_sha),
                failed_workflows: run.name.into_iter().collect(),
                ..base(TriggerKind::FailedWorkflow, id, pull.number, sender, message)
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{classify, mentions, TriggerRules};
    use crate::events::{RepositoryRef, SecretSlot, SenderRef, WebhookReceived};

    fn comment_created() -> WebhookReceived {
        WebhookReceived {
            delivery_id: "d-1".into(),
            hook_id: "1".into(),
            event: "issue_comment".into(),
            action: Some("created".into()),
            installation_id: Some(7),
            repository: Some(RepositoryRef { id: 3, full_name: "acme/app".into() }),
            sender: Some(SenderRef { id: 5, login: "alice".into(), kind: "User".into() }),
            signature: "sha256=00".into(),
            secret: SecretSlot::Current,
        }
    }

    #[test]
    fn a_comment_asks_only_when_its_body_names_the_handle_escaped_or_not() {
        let rules = TriggerRules::default();
        let ask = |body: &str| {
            let payload = format!(r#"{{"issue":{{"number":4}},"comment":{{"id":9,"body":"{body}"}}}}"#);
            classify(&comment_created(), payload.as_bytes(), "delivery-1-d-1", 1, &rules).map(|t| t.message)
        };
        assert_eq!(ask("please @OpenHands fix"), Some("please @OpenHands fix".to_owned()));
        assert_eq!(ask(r"please \u0040openhands fix"), Some("please @openhands fix".to_owned()));
        assert_eq!(ask(r"please \u003cb\u003e fix"), None);
        assert_eq!(ask("please @openhand fix"), None);
    }

    #[test]
    fn the_mention_rule_of_the_reference() {
        let cases = [
            ("@openhands please fix", true),
            ("please fix, @openhands", true),
            ("(@openhands)", true),
            ("@OpenHands!", true),
            ("@openhands.", true),
            ("hey\n@openhands\n", true),
            ("@OPENHANDS: go", true),
            ("é@openhands", false),
            ("user@openhands.com", false),
            ("@openhands-agent", false),
            ("@openhands_x", false),
            ("@openhandsx", false),
            ("@@openhands", false),
            ("x@openhands", false),
            ("openhands", false),
            ("", false),
            ("@openhand", false),
            ("ü @openhands ü", true),
        ];
        for (text, expected) in cases {
            assert_eq!(mentions(text, "@openhands"), expected, "{text:?}");
        }
    }

    #[test]
    fn a_custom_handle_is_honoured() {
        assert!(mentions("ask @my-bot now", "@my-bot"));
        assert!(!mentions("ask @openhands now", "@my-bot"));
        assert!(!mentions("anything", ""));
    }
}
