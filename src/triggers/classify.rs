//! Which deliveries ask for the agent (REFERENCE.md's table). Pure: the same
//! delivery always gives the same answer, so a replay decides the same.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::events::{derived_id, TriggerDetected, TriggerKind, WebhookReceived};
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
    /// Bots a repository's `allow` names (lowercase): they may ask; no other bot does.
    pub allowed_bots: BTreeSet<String>,
}

impl TriggerRules {
    /// A bot asks only when the repository's `allow` names it, and the App's own bot user never does.
    fn lets_bot_ask(&self, login: &str) -> bool {
        let is_the_app = self.bot_login.as_deref().is_some_and(|app| app.eq_ignore_ascii_case(login));
        !is_the_app && self.allowed_bots.contains(&login.to_ascii_lowercase())
    }

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
            allowed_bots: BTreeSet::new(),
        }
    }
}

fn is_bot(sender: &crate::events::SenderRef) -> bool {
    sender.kind.eq_ignore_ascii_case("bot") || sender.login.ends_with("[bot]")
}

/// Whether `text` mentions `handle`: case-insensitive; the handle starts the
/// text or follows a character that is neither a word character nor `@`, and
/// is not followed by a word character or `-`. So `(@openhands)`,
/// `@OpenHands!` and `@openhands.` match; `user@openhands.com` and
/// `@openhands-agent` do not.
pub fn mentions(text: &str, handle: &str) -> bool {
    occurrences(text, handle).any(|(before, after)| counts_as_mention(before, after))
}

/// The text after each mention of `handle` in `text` (by the [`mentions`]
/// rule), for rules about what follows it (`{handle} stop`).
pub fn after_mentions<'t>(text: &'t str, handle: &'t str) -> impl Iterator<Item = &'t str> + 't {
    occurrences(text, handle).filter(|(before, after)| counts_as_mention(*before, after)).map(|(_, after)| after)
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The [`mentions`] rule for one occurrence of the handle, given the
/// character before it and the text after it.
fn counts_as_mention(before: Option<char>, after: &str) -> bool {
    let before_ok = before.is_none_or(|c| !is_word(c) && c != '@');
    let after_ok = after.chars().next().is_none_or(|c| !is_word(c) && c != '-');
    before_ok && after_ok
}

/// Every case-insensitive occurrence of `handle` in `text`: the character
/// before it and the text after it.
fn occurrences<'t>(text: &'t str, handle: &'t str) -> impl Iterator<Item = (Option<char>, &'t str)> + 't {
    let (text_bytes, handle_bytes) = (text.as_bytes(), handle.as_bytes());
    let starts = if handle.is_empty() { 0 } else { text_bytes.len().saturating_sub(handle_bytes.len() - 1) };
    (0..starts).filter_map(move |start| {
        let end = start + handle_bytes.len();
        let found = text.is_char_boundary(start)
            && text.is_char_boundary(end)
            && text_bytes[start..end].eq_ignore_ascii_case(handle_bytes);
        found.then(|| (text[..start].chars().next_back(), &text[end..]))
    })
}

/// Why `text` does not mention `handle` (it does not, by [`mentions`]):
/// the handle inside an email address (`user@openhands.com`), inside a
/// longer word or handle (`@openhands-agent`, `x@openhands`), or not there.
fn missing_mention(text: &str, handle: &str) -> NotAsking {
    let local_part = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let mut found = false;
    for (before, after) in occurrences(text, handle) {
        found = true;
        let domain = after.strip_prefix('.').and_then(|d| d.chars().next()).is_some_and(char::is_alphanumeric);
        if before.is_some_and(local_part) && domain {
            return NotAsking::HandleInEmail;
        }
    }
    if found {
        NotAsking::HandlePartOfWord
    } else {
        NotAsking::NoMention
    }
}

/// Why a delivery does not ask for the agent in one way. [`code`](Self::code)
/// is stable; [`sentence`](Self::sentence) says it to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAsking {
    /// This way reads other deliveries (`asks_on`, e.g. `issues.labeled`).
    OtherEvent { asks_on: &'static str },
    /// Not in `HOOKWISE_TRIGGERS`.
    SwitchedOff,
    /// A failed run, with `ENABLE_PROACTIVE_CONVERSATION_STARTERS` off.
    ProactiveOff,
    /// Sent by a bot (the App included).
    BotSender { login: String },
    /// The payload is not the shape this event has (the field it lacks).
    Unreadable { lacks: &'static str },
    /// Another label than the trigger label.
    OtherLabel { label: String },
    /// The trigger label in other letter case (labels compare exactly).
    LabelDiffersInCase { label: String },
    /// `issues.labeled`/`issues.assigned` of a pull request: read from `pull_request.*`.
    PullRequestIssue,
    /// No text (a review without a body).
    NoText,
    /// The text does not name the handle at all.
    NoMention,
    /// The handle only inside a longer word or handle.
    HandlePartOfWord,
    /// The handle only inside an email address.
    HandleInEmail,
    /// hookwise's own comment (it carries the hidden marker).
    OwnComment,
    /// An edit that did not change the text (no `changes.body`).
    EditChangedNoText,
    /// An edit whose text before (`changes.body.from`) already asked.
    EditAlreadyMentioned,
    /// The App's bot user is not known, so no assignment asks.
    BotLoginUnknown,
    /// Assigned to someone else than the App's bot user.
    NotAssignedToBot { assignee: Option<String> },
    /// A run that did not fail.
    RunNotFailed { conclusion: Option<String> },
    /// A failed run on no pull request's head.
    RunOnNoPullRequest,
    /// No installation, repository or sender: nothing to act with or for.
    NotAnAppDelivery { lacks: &'static str },
}

impl NotAsking {
    pub fn code(&self) -> &'static str {
        match self {
            NotAsking::OtherEvent { .. } => "event_not_a_trigger",
            NotAsking::SwitchedOff => "switched_off",
            NotAsking::ProactiveOff => "proactive_off",
            NotAsking::BotSender { .. } => "bot_sender",
            NotAsking::Unreadable { .. } => "payload_unreadable",
            NotAsking::OtherLabel { .. } => "other_label",
            NotAsking::LabelDiffersInCase { .. } => "label_differs_in_case",
            NotAsking::PullRequestIssue => "pull_request_event_asks",
            NotAsking::NoText => "no_text",
            NotAsking::NoMention => "no_mention",
            NotAsking::HandlePartOfWord => "handle_part_of_word",
            NotAsking::HandleInEmail => "handle_in_email",
            NotAsking::OwnComment => "hookwise_comment",
            NotAsking::EditChangedNoText => "edit_changed_no_text",
            NotAsking::EditAlreadyMentioned => "edit_already_mentioned",
            NotAsking::BotLoginUnknown => "bot_login_unknown",
            NotAsking::NotAssignedToBot { .. } => "not_assigned_to_bot",
            NotAsking::RunNotFailed { .. } => "run_not_failed",
            NotAsking::RunOnNoPullRequest => "run_on_no_pull_request",
            NotAsking::NotAnAppDelivery { .. } => "not_an_app_delivery",
        }
    }

    /// The reason in words, with the rules' label and handle.
    pub fn sentence(&self, way: TriggerSwitch, rules: &TriggerRules) -> String {
        let (label, handle) = (&rules.label, &rules.mention);
        let bot = rules.bot_login.as_deref().unwrap_or("unknown");
        match self {
            NotAsking::OtherEvent { asks_on } => format!("`{}` asks only on {asks_on}", way.name()),
            NotAsking::SwitchedOff => format!("`{}` is not in HOOKWISE_TRIGGERS", way.name()),
            NotAsking::ProactiveOff => "failed runs ask only with ENABLE_PROACTIVE_CONVERSATION_STARTERS on".into(),
            NotAsking::BotSender { login } => format!("the sender {login} is a bot, and bots never ask"),
            NotAsking::Unreadable { lacks } => format!("the payload has no readable `{lacks}`"),
            NotAsking::OtherLabel { label: put } => format!("the label `{put}` is not the trigger label `{label}`"),
            NotAsking::LabelDiffersInCase { label: put } => {
                format!(
                    "the label `{put}` differs from the trigger label `{label}` in case, and labels compare exactly"
                )
            }
            NotAsking::PullRequestIssue => {
                "it is a pull request: its label or assignment is read from the `pull_request` event".into()
            }
            NotAsking::NoText => "it has no text".into(),
            NotAsking::NoMention => format!("the text does not mention {handle}"),
            NotAsking::HandlePartOfWord => {
                format!("{handle} appears only as part of a longer word or handle, which is no mention")
            }
            NotAsking::HandleInEmail => format!("{handle} appears only inside an email address, which is no mention"),
            NotAsking::OwnComment => "it is hookwise's own comment (it carries hookwise's hidden marker)".into(),
            NotAsking::EditChangedNoText => "the edit did not change the text (no `changes.body`)".into(),
            NotAsking::EditAlreadyMentioned => {
                format!("the text before the edit already mentioned {handle}: that text asked when it was written")
            }
            NotAsking::BotLoginUnknown => {
                "the App's bot user is not known (HOOKWISE_BOT_LOGIN unset and GET /app did not answer)".into()
            }
            NotAsking::NotAssignedToBot { assignee: Some(assignee) } => {
                format!("assigned to {assignee}, not to the App's bot user {bot}")
            }
            NotAsking::NotAssignedToBot { assignee: None } => format!("not assigned to the App's bot user {bot}"),
            NotAsking::RunNotFailed { conclusion } => {
                format!("the run's conclusion is `{}`, not `failure`", conclusion.as_deref().unwrap_or("none"))
            }
            NotAsking::RunOnNoPullRequest => "the run is on no open pull request's head commit".into(),
            NotAsking::NotAnAppDelivery { lacks } => {
                format!("it would ask, but it has no {lacks}: only a GitHub App's deliveries can be acted on")
            }
        }
    }
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

/// Whether a text asks: it mentions the handle and is not one of hookwise's own.
fn asking(body: Option<&str>, rules: &TriggerRules) -> Result<(), NotAsking> {
    let body = body.filter(|b| !b.is_empty()).ok_or(NotAsking::NoText)?;
    if !mentions(body, &rules.mention) {
        return Err(missing_mention(body, &rules.mention));
    }
    if body.contains(MARKER_PREFIX) {
        return Err(NotAsking::OwnComment);
    }
    Ok(())
}

/// An edit asks only when it brought the mention: the body before it
/// (`changes.body.from`) did not ask. No `changes.body`: the text is unchanged.
fn edit_asks(changes: Option<Changes>, rules: &TriggerRules) -> Result<(), NotAsking> {
    let before = changes.and_then(|c| c.body).ok_or(NotAsking::EditChangedNoText)?;
    match asking(before.from.as_deref(), rules) {
        Ok(()) => Err(NotAsking::EditAlreadyMentioned),
        Err(_) => Ok(()),
    }
}

/// The standard request of a label or an assignment on an issue.
fn issue_request(number: u64) -> String {
    format!("Please fix issue number #{number}.")
}

/// The standard request of a label or an assignment on a pull request.
fn pull_request_request(number: u64) -> String {
    format!("Please work on pull request #{number}: address its review comments and failing checks.")
}

/// The trigger label exactly, or why not.
fn trigger_label(label: Label, rules: &TriggerRules) -> Result<(), NotAsking> {
    match label.name {
        name if name == rules.label => Ok(()),
        name if name.eq_ignore_ascii_case(&rules.label) => Err(NotAsking::LabelDiffersInCase { label: name }),
        name => Err(NotAsking::OtherLabel { label: name }),
    }
}

/// Assigned to the App's bot user (never, while that is unknown), or why not.
fn assigned_to_bot(assignee: Option<User>, rules: &TriggerRules) -> Result<(), NotAsking> {
    let login = rules.bot_login.as_deref().ok_or(NotAsking::BotLoginUnknown)?;
    match assignee {
        Some(user) if user.login.eq_ignore_ascii_case(login) => Ok(()),
        other => Err(NotAsking::NotAssignedToBot { assignee: other.map(|u| u.login) }),
    }
}

/// What one way of asking makes of a delivery: a trigger, or why not.
pub type Verdict = Result<TriggerDetected, NotAsking>;

/// For every way of asking ([`TriggerSwitch::ALL`], in order), the trigger
/// `received` asks for that way, or the reason it does not. The one copy of
/// the rules: [`classify`] is its first match. `payload` is the delivery's body.
pub fn explain(
    received: &WebhookReceived,
    payload: &[u8],
    delivery_stream: &str,
    delivery_position: u64,
    rules: &TriggerRules,
) -> Vec<(TriggerSwitch, Verdict)> {
    let delivery =
        Delivery { received, payload, stream: delivery_stream, position: delivery_position, rules, exhaustive: true };
    TriggerSwitch::ALL.into_iter().map(|way| (way, delivery.asks(way))).collect()
}

/// The trigger `received` asks for, if any: the first way of asking that
/// matches (each delivery is read by at most one). `payload` is the delivery's body.
pub fn classify(
    received: &WebhookReceived,
    payload: &[u8],
    delivery_stream: &str,
    delivery_position: u64,
    rules: &TriggerRules,
) -> Option<TriggerDetected> {
    let delivery =
        Delivery { received, payload, stream: delivery_stream, position: delivery_position, rules, exhaustive: false };
    TriggerSwitch::ALL.into_iter().find_map(|way| delivery.asks(way).ok())
}

/// The `event.action` a way of asking reads; one way per delivery at most.
fn asks_on(way: TriggerSwitch) -> &'static str {
    match way {
        TriggerSwitch::Label => "issues.labeled",
        TriggerSwitch::Mention => "issue_comment.created and pull_request_review_comment.created",
        TriggerSwitch::Review => "pull_request_review.submitted",
        TriggerSwitch::Assign => "issues.assigned and pull_request.assigned",
        TriggerSwitch::PrLabel => "pull_request.labeled",
        TriggerSwitch::EditedMention => "issue_comment.edited and pull_request_review_comment.edited",
        TriggerSwitch::FailedRun => "workflow_run.completed",
    }
}

fn reads(way: TriggerSwitch, event: &str, action: &str) -> bool {
    match way {
        TriggerSwitch::Label => (event, action) == ("issues", "labeled"),
        TriggerSwitch::PrLabel => (event, action) == ("pull_request", "labeled"),
        TriggerSwitch::Mention => {
            matches!((event, action), ("issue_comment" | "pull_request_review_comment", "created"))
        }
        TriggerSwitch::EditedMention => {
            matches!((event, action), ("issue_comment" | "pull_request_review_comment", "edited"))
        }
        TriggerSwitch::Review => (event, action) == ("pull_request_review", "submitted"),
        TriggerSwitch::Assign => matches!((event, action), ("issues" | "pull_request", "assigned")),
        TriggerSwitch::FailedRun => (event, action) == ("workflow_run", "completed"),
    }
}

struct Delivery<'a> {
    received: &'a WebhookReceived,
    payload: &'a [u8],
    stream: &'a str,
    position: u64,
    rules: &'a TriggerRules,
    /// Parse the body even where the raw bytes already say it cannot ask, for
    /// the precise reason. The verdict is the same either way: the byte check
    /// ([`may_contain`]) only ever rules out what parsing would rule out too.
    exhaustive: bool,
}

impl Delivery<'_> {
    /// Cheap checks first: the event, the switches, the sender and the raw
    /// bytes (a comment or review only by naming the handle), so most
    /// deliveries are answered without parsing the body.
    fn asks(&self, way: TriggerSwitch) -> Verdict {
        let (received, rules) = (self.received, self.rules);
        let action = received.action.as_deref().unwrap_or("");
        if !reads(way, &received.event, action) {
            return Err(NotAsking::OtherEvent { asks_on: asks_on(way) });
        }
        if !rules.enabled.contains(&way) {
            return Err(NotAsking::SwitchedOff);
        }
        if !rules.allows(way) {
            return Err(NotAsking::ProactiveOff);
        }
        // Never act for a bot, the App itself included.
        if let Some(sender) = received.sender.as_ref().filter(|s| is_bot(s) && !rules.lets_bot_ask(&s.login)) {
            return Err(NotAsking::BotSender { login: sender.login.clone() });
        }
        match way {
            TriggerSwitch::Mention | TriggerSwitch::EditedMention | TriggerSwitch::Review
                if !self.exhaustive && !may_contain(self.payload, &rules.mention) =>
            {
                return Err(NotAsking::NoMention);
            }
            TriggerSwitch::Assign => {
                let login = rules.bot_login.as_deref().ok_or(NotAsking::BotLoginUnknown)?;
                if !self.exhaustive && !may_contain(self.payload, login) {
                    return Err(NotAsking::NotAssignedToBot { assignee: None });
                }
            }
            _ => {}
        }
        let payload: Payload =
            serde_json::from_slice(self.payload).map_err(|_| NotAsking::Unreadable { lacks: "body" })?;
        let asked = self.read(way, action, payload)?;
        // Only now: a delivery without them would have asked, which is the more useful answer.
        let repository = received.repository.clone().ok_or(NotAsking::NotAnAppDelivery { lacks: "repository" })?;
        let installation_id = received.installation_id.ok_or(NotAsking::NotAnAppDelivery { lacks: "installation" })?;
        let requester = received.sender.clone().ok_or(NotAsking::NotAnAppDelivery { lacks: "sender" })?;
        Ok(TriggerDetected {
            trigger_id: asked.id,
            kind: asked.kind,
            repository,
            installation_id,
            number: asked.number,
            requester,
            comment_id: asked.comment_id,
            message: asked.message,
            title: asked.title,
            head_branch: asked.head_branch,
            head_sha: asked.head_sha,
            path: asked.path,
            line: asked.line,
            thread_id: asked.thread_id,
            failed_workflows: asked.failed_workflows,
            delivery_stream: self.stream.to_owned(),
            delivery_id: Some(received.delivery_id.clone()),
            delivery_position: self.position,
            repository_settings: None,
        })
    }

    /// The body's part of a trigger, for the one way that reads this delivery.
    fn read(&self, way: TriggerSwitch, action: &str, payload: Payload) -> Result<Asked, NotAsking> {
        let (received, rules) = (self.received, self.rules);
        let lacks = |field: &'static str| NotAsking::Unreadable { lacks: field };
        let repo_id = received.repository.as_ref().map_or(0, |r| r.id).to_string();
        let event = received.event.as_str();
        match way {
            TriggerSwitch::Label => {
                let (label, issue) = (payload.label.ok_or(lacks("label"))?, payload.issue.ok_or(lacks("issue"))?);
                trigger_label(label, rules)?;
                if issue.pull_request.is_some() {
                    return Err(NotAsking::PullRequestIssue);
                }
                // The same labelling seen through several hooks is one request;
                // labelling again later (a new `updated_at`) is a new one.
                let stamp = issue.updated_at.unwrap_or_else(|| received.delivery_id.clone());
                let id = derived_id(&["label", &repo_id, &issue.number.to_string(), &stamp]);
                Ok(Asked {
                    title: issue.title,
                    ..Asked::new(TriggerKind::Label, id, issue.number, issue_request(issue.number))
                })
            }
            TriggerSwitch::Mention | TriggerSwitch::EditedMention if event == "issue_comment" => {
                let (issue, comment) = (payload.issue.ok_or(lacks("issue"))?, payload.comment.ok_or(lacks("comment"))?);
                let on_pr = issue.pull_request.is_some();
                let (kind, id) = if action == "created" {
                    let kind = if on_pr { TriggerKind::PrComment } else { TriggerKind::IssueComment };
                    (kind, derived_id(&["comment", &comment.id.to_string()]))
                } else {
                    edit_asks(payload.changes, rules)?;
                    let kind = if on_pr { TriggerKind::EditedPrComment } else { TriggerKind::EditedIssueComment };
                    // Each edit is its own request; the same edit through another
                    // hook or a redelivery carries the same `updated_at`.
                    let stamp = comment.updated_at.clone().unwrap_or_else(|| received.delivery_id.clone());
                    (kind, derived_id(&["edited_comment", &comment.id.to_string(), &stamp]))
                };
                asking(comment.body.as_deref(), rules)?;
                let message = comment.body.unwrap_or_default();
                Ok(Asked {
                    comment_id: Some(comment.id),
                    title: issue.title,
                    ..Asked::new(kind, id, issue.number, message)
                })
            }
            TriggerSwitch::Mention | TriggerSwitch::EditedMention => {
                let (pull, comment) =
                    (payload.pull_request.ok_or(lacks("pull_request"))?, payload.comment.ok_or(lacks("comment"))?);
                let (kind, id) = if action == "created" {
                    (TriggerKind::ReviewComment, derived_id(&["review_comment", &comment.id.to_string()]))
                } else {
                    edit_asks(payload.changes, rules)?;
                    let stamp = comment.updated_at.clone().unwrap_or_else(|| received.delivery_id.clone());
                    (
                        TriggerKind::EditedReviewComment,
                        derived_id(&["edited_review_comment", &comment.id.to_string(), &stamp]),
                    )
                };
                asking(comment.body.as_deref(), rules)?;
                let message = comment.body.unwrap_or_default();
                Ok(Asked {
                    comment_id: Some(comment.id),
                    title: pull.title,
                    head_branch: pull.head.branch,
                    head_sha: pull.head.sha,
                    path: comment.path,
                    line: comment.line.or(comment.original_line),
                    thread_id: comment.in_reply_to_id,
                    ..Asked::new(kind, id, pull.number, message)
                })
            }
            TriggerSwitch::Review => {
                let (pull, review) =
                    (payload.pull_request.ok_or(lacks("pull_request"))?, payload.review.ok_or(lacks("review"))?);
                asking(review.body.as_deref(), rules)?;
                let id = derived_id(&["review", &review.id.to_string()]);
                Ok(Asked {
                    comment_id: Some(review.id),
                    title: pull.title,
                    head_branch: pull.head.branch,
                    head_sha: pull.head.sha,
                    ..Asked::new(TriggerKind::PrReview, id, pull.number, review.body.unwrap_or_default())
                })
            }
            TriggerSwitch::PrLabel => {
                let (label, pull) =
                    (payload.label.ok_or(lacks("label"))?, payload.pull_request.ok_or(lacks("pull_request"))?);
                trigger_label(label, rules)?;
                let stamp = pull.updated_at.unwrap_or_else(|| received.delivery_id.clone());
                let id = derived_id(&["pr_label", &repo_id, &pull.number.to_string(), &stamp]);
                Ok(Asked {
                    title: pull.title,
                    head_branch: pull.head.branch,
                    head_sha: pull.head.sha,
                    ..Asked::new(TriggerKind::PrLabel, id, pull.number, pull_request_request(pull.number))
                })
            }
            TriggerSwitch::Assign if event == "issues" => {
                let issue = payload.issue.ok_or(lacks("issue"))?;
                assigned_to_bot(payload.assignee, rules)?;
                // A pull request's assignment is read from `pull_request.assigned`.
                if issue.pull_request.is_some() {
                    return Err(NotAsking::PullRequestIssue);
                }
                let stamp = issue.updated_at.unwrap_or_else(|| received.delivery_id.clone());
                let id = derived_id(&["assign", &repo_id, &issue.number.to_string(), &stamp]);
                let message = issue_request(issue.number);
                Ok(Asked { title: issue.title, ..Asked::new(TriggerKind::IssueAssigned, id, issue.number, message) })
            }
            TriggerSwitch::Assign => {
                let pull = payload.pull_request.ok_or(lacks("pull_request"))?;
                assigned_to_bot(payload.assignee, rules)?;
                let stamp = pull.updated_at.unwrap_or_else(|| received.delivery_id.clone());
                let id = derived_id(&["assign", &repo_id, &pull.number.to_string(), &stamp]);
                Ok(Asked {
                    title: pull.title,
                    head_branch: pull.head.branch,
                    head_sha: pull.head.sha,
                    ..Asked::new(TriggerKind::PrAssigned, id, pull.number, pull_request_request(pull.number))
                })
            }
            TriggerSwitch::FailedRun => {
                let run = payload.workflow_run.ok_or(lacks("workflow_run"))?;
                if run.conclusion.as_deref() != Some("failure") {
                    return Err(NotAsking::RunNotFailed { conclusion: run.conclusion });
                }
                let pull = run
                    .pull_requests
                    .into_iter()
                    .find(|p| p.head.sha.as_deref() == Some(run.head_sha.as_str()))
                    .ok_or(NotAsking::RunOnNoPullRequest)?;
                let id = derived_id(&["failed_run", &repo_id, &pull.number.to_string(), &run.head_sha]);
                let message = "A workflow run failed on this pull request.".to_owned();
                Ok(Asked {
                    head_branch: pull.head.branch.or(run.head_branch),
                    head_sha: Some(run.head_sha),
                    failed_workflows: run.name.into_iter().collect(),
                    ..Asked::new(TriggerKind::FailedWorkflow, id, pull.number, message)
                })
            }
        }
    }
}

/// What the body says of a trigger; the delivery's envelope adds the rest.
struct Asked {
    id: uuid::Uuid,
    kind: TriggerKind,
    number: u64,
    message: String,
    comment_id: Option<u64>,
    title: Option<String>,
    head_branch: Option<String>,
    head_sha: Option<String>,
    path: Option<String>,
    line: Option<u64>,
    thread_id: Option<u64>,
    failed_workflows: Vec<String>,
}

impl Asked {
    fn new(kind: TriggerKind, id: uuid::Uuid, number: u64, message: String) -> Asked {
        Asked {
            id,
            kind,
            number,
            message,
            comment_id: None,
            title: None,
            head_branch: None,
            head_sha: None,
            path: None,
            line: None,
            thread_id: None,
            failed_workflows: Vec::new(),
        }
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
    fn a_bot_asks_only_when_the_repository_names_it_and_the_app_never() {
        let payload = br#"{"issue":{"number":4},"comment":{"id":9,"body":"@openhands go"}}"#;
        let from = |login: &str| WebhookReceived {
            sender: Some(SenderRef { id: 1, login: login.into(), kind: "Bot".into() }),
            ..comment_created()
        };
        let rules = TriggerRules {
            bot_login: Some("hookwise[bot]".into()),
            allowed_bots: ["ci-bot[bot]".to_owned(), "hookwise[bot]".to_owned()].into(),
            ..TriggerRules::default()
        };
        assert!(classify(&from("CI-Bot[bot]"), payload, "s", 1, &rules).is_some());
        assert!(classify(&from("renovate[bot]"), payload, "s", 1, &rules).is_none());
        assert!(classify(&from("hookwise[bot]"), payload, "s", 1, &rules).is_none());
        assert!(classify(&from("ci-bot[bot]"), payload, "s", 1, &TriggerRules::default()).is_none());
    }

    #[test]
    fn a_custom_handle_is_honoured() {
        assert!(mentions("ask @my-bot now", "@my-bot"));
        assert!(!mentions("ask @openhands now", "@my-bot"));
        assert!(!mentions("anything", ""));
    }
}
