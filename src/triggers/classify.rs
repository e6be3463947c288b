//! Which deliveries ask for the agent (REFERENCE.md's table). Pure: the same
//! delivery always gives the same answer, so a replay decides the same.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::events::{derived_id, SenderRef, TriggerDetected, TriggerKind, WebhookReceived};
use crate::github::prefilter::may_contain;

/// Hidden in every comment hookwise writes: a body that carries it never triggers.
pub const MARKER_PREFIX: &str = "<!-- hookwise:";

/// One way of asking, as `HOOKWISE_TRIGGERS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TriggerSwitch {
    /// The trigger label on an issue.
    Label,
    /// A new comment (issue, pull request or inline) that mentions the handle.
    Mention,
    /// A submitted pull request review whose body mentions the handle.
    Review,
    /// An issue or pull request assigned to the App's bot user.
    Assign,
    /// The trigger label on a pull request.
    PrLabel,
    /// A comment edited to mention the handle.
    EditedMention,
    /// A failed workflow run (also needs `ENABLE_PROACTIVE_CONVERSATION_STARTERS`).
    FailedRun,
}

impl TriggerSwitch {
    pub const ALL: [TriggerSwitch; 7] = [
        TriggerSwitch::Label,
        TriggerSwitch::Mention,
        TriggerSwitch::Review,
        TriggerSwitch::Assign,
        TriggerSwitch::PrLabel,
        TriggerSwitch::EditedMention,
        TriggerSwitch::FailedRun,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TriggerSwitch::Label => "label",
            TriggerSwitch::Mention => "mention",
            TriggerSwitch::Review => "review",
            TriggerSwitch::Assign => "assign",
            TriggerSwitch::PrLabel => "pr-label",
            TriggerSwitch::EditedMention => "edited-mention",
            TriggerSwitch::FailedRun => "failed-run",
        }
    }

    /// The switches a comma-separated list names (case-insensitive, blanks
    /// ignored); an unknown name is an error naming it.
    pub fn parse_list(list: &str) -> Result<BTreeSet<TriggerSwitch>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(|name| {
                TriggerSwitch::ALL.into_iter().find(|switch| switch.name().eq_ignore_ascii_case(name)).ok_or_else(
                    || {
                        let known: Vec<_> = TriggerSwitch::ALL.iter().map(|s| s.name()).collect();
                        format!("unknown trigger {name:?} (known: {})", known.join(","))
                    },
                )
            })
            .collect()
    }
}

/// What counts as asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerRules {
    /// The label that asks (`openhands`), on an issue or a pull request, compared exactly.
    pub label: String,
    /// The handle whose mention asks (`@openhands`), compared case-insensitively.
    pub mention: String,
    /// Act on failed workflow runs of pull requests (and `failed-run` must be switched on).
    pub proactive: bool,
    /// The ways of asking that are on (`HOOKWISE_TRIGGERS`; all by default).
    pub enabled: BTreeSet<TriggerSwitch>,
    /// The App's bot user (`my-app[bot]`), compared case-insensitively;
    /// `None`: unknown, so assignments ask nothing.
    pub bot_login: Option<String>,
}

impl TriggerRules {
    pub fn allows(&self, switch: TriggerSwitch) -> bool {
        self.enabled.contains(&switch) && (switch != TriggerSwitch::FailedRun || self.proactive)
    }
}

impl Default for TriggerRules {
    fn default() -> Self {
        TriggerRules {
            label: "openhands".into(),
            mention: "@openhands".into(),
            proactive: false,
            enabled: TriggerSwitch::ALL.into_iter().collect(),
            bot_login: None,
        }
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
    updated_at: Option<String>,
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
    updated_at: Option<String>,
    head: Head,
}

#[derive(Deserialize)]
struct Review {
    id: u64,
    body: Option<String>,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct BodyChange {
    from: Option<String>,
}

#[derive(Deserialize)]
struct Changes {
    body: Option<BodyChange>,
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
    review: Option<Review>,
    assignee: Option<User>,
    changes: Option<Changes>,
}

/// A body that asks: it mentions the handle and is not one of hookwise's own.
fn asking(body: Option<String>, rules: &TriggerRules) -> Option<String> {
    body.filter(|b| mentions(b, &rules.mention) && !b.contains(MARKER_PREFIX))
}

/// An edit asks only when it brought the mention: the body before it
/// (`changes.body.from`) did not ask. No `changes.body`: the text is unchanged.
fn edit_asks(changes: Option<Changes>, rules: &TriggerRules) -> bool {
    changes.and_then(|c| c.body).is_some_and(|before| asking(before.from, rules).is_none())
}

/// The standard request of a label or an assignment on an issue.
fn issue_request(number: u64) -> String {
    format!("Please fix issue number #{number}.")
}

/// The standard request of a label or an assignment on a pull request.
fn pull_request_request(number: u64) -> String {
    format!("Please work on pull request #{number}: address its review comments and failing checks.")
}

/// Whether `user` is the App's bot user (never, while that is unknown).
fn is_bot(user: &User, rules: &TriggerRules) -> bool {
    rules.bot_login.as_deref().is_some_and(|login| user.login.eq_ignore_ascii_case(login))
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
    // Only these deliveries can ask, a comment or review only by naming the
    // handle and an assignment only by naming the bot: everything else is
    // answered without parsing the body.
    let may_ask = match (received.event.as_str(), action) {
        ("issues", "labeled") => rules.allows(TriggerSwitch::Label),
        ("pull_request", "labeled") => rules.allows(TriggerSwitch::PrLabel),
        ("issue_comment" | "pull_request_review_comment", "created") => {
            rules.allows(TriggerSwitch::Mention) && may_contain(payload, &rules.mention)
        }
        ("issue_comment" | "pull_request_review_comment", "edited") => {
            rules.allows(TriggerSwitch::EditedMention) && may_contain(payload, &rules.mention)
        }
        ("pull_request_review", "submitted") => {
            rules.allows(TriggerSwitch::Review) && may_contain(payload, &rules.mention)
        }
        ("issues" | "pull_request", "assigned") => {
            rules.allows(TriggerSwitch::Assign)
                && rules.bot_login.as_deref().is_some_and(|login| may_contain(payload, login))
        }
        ("workflow_run", "completed") => rules.allows(TriggerSwitch::FailedRun),
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
            let message = issue_request(issue.number);
            Some(TriggerDetected { title: issue.title, ..base(TriggerKind::Label, id, issue.number, sender, message) })
        }
        ("issue_comment", "created" | "edited") => {
            let (issue, comment) = (payload.issue?, payload.comment?);
            let on_pr = issue.pull_request.is_some();
            let (kind, id) = if action == "created" {
                let kind = if on_pr { TriggerKind::PrComment } else { TriggerKind::IssueComment };
                (kind, derived_id(&["comment", &comment.id.to_string()]))
            } else {
                if !edit_asks(payload.changes, rules) {
                    return None;
                }
                let kind = if on_pr { TriggerKind::EditedPrComment } else { TriggerKind::EditedIssueComment };
                // Each edit is its own request; the same edit through another
                // hook or a redelivery carries the same `updated_at`.
                let stamp = comment.updated_at.clone().unwrap_or_else(|| received.delivery_id.clone());
                (kind, derived_id(&["edited_comment", &comment.id.to_string(), &stamp]))
            };
            let body = asking(comment.body, rules)?;
            Some(TriggerDetected {
                comment_id: Some(comment.id),
                title: issue.title,
                ..base(kind, id, issue.number, sender, body)
            })
        }
        ("pull_request_review_comment", "created" | "edited") => {
            let (pull, comment) = (payload.pull_request?, payload.comment?);
            let (kind, id) = if action == "created" {
                (TriggerKind::ReviewComment, derived_id(&["review_comment", &comment.id.to_string()]))
            } else {
                if !edit_asks(payload.changes, rules) {
                    return None;
                }
                let stamp = comment.updated_at.clone().unwrap_or_else(|| received.delivery_id.clone());
                (
                    TriggerKind::EditedReviewComment,
                    derived_id(&["edited_review_comment", &comment.id.to_string(), &stamp]),
                )
            };
            let body = asking(comment.body, rules)?;
            Some(TriggerDetected {
                comment_id: Some(comment.id),
                title: pull.title,
                head_branch: pull.head.branch,
                head_sha: pull.head.sha,
                path: comment.path,
                line: comment.line.or(comment.original_line),
                thread_id: comment.in_reply_to_id,
                ..base(kind, id, pull.number, sender, body)
            })
        }
        ("pull_request_review", "submitted") => {
            let (pull, review) = (payload.pull_request?, payload.review?);
            let body = asking(review.body, rules)?;
            let id = derived_id(&["review", &review.id.to_string()]);
            Some(TriggerDetected {
                comment_id: Some(review.id),
                title: pull.title,
                head_branch: pull.head.branch,
                head_sha: pull.head.sha,
                ..base(TriggerKind::PrReview, id, pull.number, sender, body)
            })
        }
        ("pull_request", "labeled") => {
            let (label, pull) = (payload.label?, payload.pull_request?);
            if label.name != rules.label {
                return None;
            }
            let stamp = pull.updated_at.unwrap_or_else(|| received.delivery_id.clone());
            let id = derived_id(&["pr_label", &repo_id, &pull.number.to_string(), &stamp]);
            Some(TriggerDetected {
                title: pull.title,
                head_branch: pull.head.branch,
                head_sha: pull.head.sha,
                ..base(TriggerKind::PrLabel, id, pull.number, sender, pull_request_request(pull.number))
            })
        }
        ("issues", "assigned") => {
            let (assignee, issue) = (payload.assignee?, payload.issue?);
            // A pull request's assignment is read from `pull_request.assigned`.
            if !is_bot(&assignee, rules) || issue.pull_request.is_some() {
                return None;
            }
            let stamp = issue.updated_at.unwrap_or_else(|| received.delivery_id.clone());
            let id = derived_id(&["assign", &repo_id, &issue.number.to_string(), &stamp]);
            let message = issue_request(issue.number);
            Some(TriggerDetected {
                title: issue.title,
                ..base(TriggerKind::IssueAssigned, id, issue.number, sender, message)
            })
        }
        ("pull_request", "assigned") => {
            let (assignee, pull) = (payload.assignee?, payload.pull_request?);
            if !is_bot(&assignee, rules) {
                return None;
            }
            let stamp = pull.updated_at.unwrap_or_else(|| received.delivery_id.clone());
            let id = derived_id(&["assign", &repo_id, &pull.number.to_string(), &stamp]);
            Some(TriggerDetected {
                title: pull.title,
                head_branch: pull.head.branch,
                head_sha: pull.head.sha,
                ..base(TriggerKind::PrAssigned, id, pull.number, sender, pull_request_request(pull.number))
            })
        }
        ("workflow_run", "completed") => {
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
