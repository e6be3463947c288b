//! The executor: the only place that calls GitHub or the agent runtime. It
//! claims due outbox commands, performs each step, and appends the step's
//! result to the trigger's stream with event ids derived from the command id,
//! so a crash after the call but before the row is marked done cannot record
//! anything twice. A step whose result is already in the stream is not
//! performed again. Where the remote side cannot deduplicate (comments), a
//! retried step first looks for its hidden marker.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use uuid::Uuid;

use super::{agent_events, PullRequestRef, Step};
use crate::agent::{AgentError, AgentRuntime, ConversationRequest, StartOutcome};
use crate::config::ProcessSettings;
use crate::events::pull_request::{is_openhands, PullRequestEnriched};
use crate::events::{
    derived_id, streams, AcknowledgementPosted, ConversationRequested, ConversationStarted, ConversationStatusChanged,
    DomainEvent, PermissionChecked, ReactionAdded, StepFailed, SummaryPosted, TriggerAbandoned, TriggerDetected,
    TriggerKind, TriggerRejected,
};
use crate::github::classify::MARKER_PREFIX;
use crate::github::client::{GitHubClient, GitHubError};
use crate::github::rest::{PullRequestActivity, ReactionTarget};
use crate::sql::{Dialect, SqlDb, SqlError, Statement};
use crate::sql_params;
use crate::store::{now_micros, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StoreError};

/// How often an idle executor looks for due commands.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);
/// Comments the agent gets as context, each cut to this many characters.
const CONTEXT_COMMENTS: usize = 10;
const COMMENT_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("{0}")]
    NotYet(String),
    #[error("{0}")]
    Invalid(String),
}

impl StepError {
    fn is_retryable(&self) -> bool {
        match self {
            StepError::GitHub(e) => e.is_retryable(),
            StepError::Agent(e) => e.is_retryable(),
            StepError::Store(_) | StepError::Sql(_) | StepError::NotYet(_) => true,
            StepError::Invalid(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            StepError::GitHub(e) => e.retry_after(),
            _ => None,
        }
    }
}

struct Claimed {
    command_id: Uuid,
    /// For a PR command, the PR's subject id (see [`super::pull_request_subject`]).
    trigger_id: Uuid,
    step: Step,
    attempts: u32,
    /// The PR of an [`Step::EnrichPullRequest`].
    pull_request: Option<PullRequestRef>,
}

impl Claimed {
    /// Where the command's results and failures are recorded: its trigger's
    /// stream, or the PR's own stream (which may not exist yet).
    fn stream(&self) -> (String, ExpectedVersion) {
        match &self.pull_request {
            Some(pr) => (pr.stream(), ExpectedVersion::Any),
            None => (streams::trigger(self.trigger_id), ExpectedVersion::StreamExists),
        }
    }
}

pub struct Executor {
    store: Arc<dyn EventStore>,
    db: SqlDb,
    github: Arc<GitHubClient>,
    agent: Option<Arc<dyn AgentRuntime>>,
    settings: ProcessSettings,
}

impl Executor {
    pub fn new(store: Arc<dyn EventStore>, db: SqlDb, settings: ProcessSettings) -> Self {
        let github = Arc::new(GitHubClient::new(&settings.github_api_url, settings.github.clone()));
        let agent = settings.agent.as_ref().map(crate::agent::build);
        Executor { store, db, github, agent, settings }
    }

    /// Performs due commands until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let worked = match self.claim().await {
                Ok(Some(command)) => {
                    self.perform(command).await;
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming an outbox command failed");
                    false
                }
            };
            if !worked {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }

    async fn claim(&self) -> Result<Option<Claimed>, SqlError> {
        let now = now_micros();
        let lock = match self.db.dialect() {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE outbox SET claimed_until = ?, attempts = attempts + 1, updated_at = ?
             WHERE command_id = (
                 SELECT command_id FROM outbox
                 WHERE status = 'pending' AND due_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)
                 ORDER BY due_at LIMIT 1 {lock})
             RETURNING command_id, trigger_id, step, attempts, arguments"
        );
        let lease = now + self.settings.claim_lease.as_micros() as i64;
        let rows = self.db.write_returning(vec![Statement::new(sql, sql_params![lease, now, now, now])]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let parse = |text: String| Uuid::parse_str(&text).map_err(|e| SqlError::Database(e.to_string()));
        let step_name: String = row.get(2)?;
        let step = Step::parse(&step_name).ok_or_else(|| SqlError::Database(format!("unknown step {step_name}")))?;
        let pull_request = match step {
            Step::EnrichPullRequest => {
                let arguments: Option<String> = row.get(4)?;
                let pr = arguments.as_deref().and_then(|a| serde_json::from_str(a).ok());
                Some(pr.ok_or_else(|| SqlError::Database("an enrich_pull_request command without its PR".into()))?)
            }
            _ => None,
        };
        Ok(Some(Claimed {
            command_id: parse(row.get(0)?)?,
            trigger_id: parse(row.get(1)?)?,
            step,
            attempts: row.get::<u64>(3)? as u32,
            pull_request,
        }))
    }

    async fn perform(&self, command: Claimed) {
        let outcome = self.perform_step(&command).await;
        let result = match outcome {
            Ok(events) => self.finish(&command, events).await,
            Err(e) => self.fail(&command, e).await,
        };
        if let Err(e) = result {
            // The lease runs out and the command is tried again; its events are idempotent.
            tracing::warn!(command = %command.command_id, error = %e, "recording a step's outcome failed");
        }
    }

    async fn finish(&self, command: &Claimed, events: Vec<NewEvent>) -> Result<(), StepError> {
        count_attempt(command.step, "done");
        // The runtime may call back as soon as the conversation exists; map it
        // now rather than when the process manager catches up (which it also does).
        let started: Vec<ConversationStarted> = events
            .iter()
            .filter(|e| e.event_type == ConversationStarted::TYPE)
            .filter_map(|e| serde_json::from_slice(&e.data).ok())
            .collect();
        if !events.is_empty() {
            let (stream, expected) = command.stream();
            self.store.append(&stream, expected, events).await?;
        }
        if !started.is_empty() {
            let rows = started.iter().map(|s| super::map_conversation(&s.conversation_id, s.trigger_id)).collect();
            self.db.write(rows).await?;
        }
        self.mark(command, "done", None, None).await
    }

    async fn fail(&self, command: &Claimed, error: StepError) -> Result<(), StepError> {
        let message = error.to_string();
        tracing::warn!(trigger = %command.trigger_id, step = command.step.as_str(), attempt = command.attempts, error = %message, "step failed");
        let (stream, expected) = command.stream();
        let attempt = command.attempts.to_string();
        if error.is_retryable() && command.attempts < self.settings.retry_max_attempts {
            let delay = error.retry_after().unwrap_or_else(|| self.backoff(command.attempts)).min(MAX_RETRY_DELAY);
            let retry_at = now_micros() + delay.as_micros() as i64;
            let failed = StepFailed {
                trigger_id: command.trigger_id,
                step: command.step.as_str().to_owned(),
                attempt: command.attempts,
                error: message.clone(),
                retry_at_micros: retry_at,
            };
            count_attempt(command.step, "retry");
            let id = derived_id(&[&command.command_id.to_string(), "failed", &attempt]);
            self.store.append(&stream, expected, vec![event(&failed, id)?]).await?;
            self.mark(command, "pending", Some(retry_at), Some(&message)).await
        } else {
            let abandoned = TriggerAbandoned {
                trigger_id: command.trigger_id,
                step: command.step.as_str().to_owned(),
                error: message.clone(),
                attempts: command.attempts,
            };
            count_attempt(command.step, "abandoned");
            let id = derived_id(&[&command.command_id.to_string(), "abandoned", &attempt]);
            self.store.append(&stream, expected, vec![event(&abandoned, id)?]).await?;
            self.mark(command, "abandoned", None, Some(&message)).await
        }
    }

    /// Exponential with jitter, from the configured base.
    fn backoff(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_base)
            .with_max_delay(MAX_RETRY_DELAY)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(MAX_RETRY_DELAY)
    }

    async fn mark(
        &self,
        command: &Claimed,
        status: &str,
        due_at: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StepError> {
        let now = now_micros();
        self.db
            .write(vec![Statement::new(
                "UPDATE outbox SET status = ?, due_at = COALESCE(?, due_at), claimed_until = NULL,
                     last_error = ?, updated_at = ? WHERE command_id = ?",
                sql_params![status, due_at, error, now, command.command_id.to_string()],
            )])
            .await?;
        Ok(())
    }

    async fn perform_step(&self, command: &Claimed) -> Result<Vec<NewEvent>, StepError> {
        let ids = EventIds(command.command_id);
        if let Some(pr) = &command.pull_request {
            return self.enrich_pull_request(pr, &ids).await;
        }
        let history = self.store.read_stream(&streams::trigger(command.trigger_id), 0, usize::MAX).await?;
        let trigger = history
            .iter()
            .find_map(|e| TriggerDetected::decode(e).ok())
            .ok_or_else(|| StepError::Invalid("the trigger stream has no TriggerDetected".into()))?;
        match command.step {
            Step::CheckPermission => self.check_permission(&trigger, &history, &ids).await,
            Step::AddReaction => self.add_reaction(&trigger, &history, &ids).await,
            Step::StartConversation => self.start_conversation(&trigger, &history, &ids).await,
            Step::PostAcknowledgement => self.post_acknowledgement(&trigger, &history, command, &ids).await,
            Step::PostSummary => self.post_summary(&trigger, &history, command, &ids).await,
            Step::PostSuggestion => self.post_suggestion(&trigger, &history, command, &ids).await,
            Step::EnrichPullRequest => Err(StepError::Invalid("an enrich_pull_request command without its PR".into())),
        }
    }

    fn reject(
        trigger: &TriggerDetected,
        ids: &EventIds,
        reason: &str,
        message: String,
    ) -> Result<Vec<NewEvent>, StepError> {
        let rejected = TriggerRejected { trigger_id: trigger.trigger_id, reason: reason.to_owned(), message };
        Ok(vec![event(&rejected, ids.result(9))?])
    }

    async fn check_permission(
        &self,
        trigger: &TriggerDetected,
        history: &[RecordedEvent],
        ids: &EventIds,
    ) -> Result<Vec<NewEvent>, StepError> {
        if has::<PermissionChecked>(history) || has::<TriggerRejected>(history) {
            return Ok(Vec::new());
        }
        if self.agent.is_none() {
            return Self::reject(trigger, ids, "agent_not_configured", "AGENT_API_URL is not set".into());
        }
        if !self.github.is_configured() {
            return Self::reject(trigger, ids, "github_not_configured", "GITHUB_APP_ID and its key are not set".into());
        }
        match self.github.installation(trigger.installation_id).await? {
            None => {
                let message = format!("installation {} does not exist", trigger.installation_id);
                return Self::reject(trigger, ids, "installation_missing", message);
            }
            Some(installation) if installation.suspended_at.is_some() => {
                let message = format!("installation {} is suspended", trigger.installation_id);
                return Self::reject(trigger, ids, "installation_suspended", message);
            }
            Some(_) => {}
        }
        let login = &trigger.requester.login;
        let permission =
            self.github.collaborator_permission(trigger.installation_id, &trigger.repository.full_name, login).await?;
        let granted = matches!(permission.as_str(), "admin" | "maintain" | "write");
        let checked = PermissionChecked {
            trigger_id: trigger.trigger_id,
            login: login.clone(),
            permission: permission.clone(),
            granted,
        };
        let mut events = vec![event(&checked, ids.result(0))?];
        if !granted {
            let message = format!("{login} has {permission} permission; admin, maintain or write is needed");
            events.extend(Self::reject(trigger, ids, "permission_denied", message)?);
        }
        Ok(events)
    }

    async fn add_reaction(
        &self,
        trigger: &TriggerDetected,
        history: &[RecordedEvent],
        ids: &EventIds,
    ) -> Result<Vec<NewEvent>, StepError> {
        if has::<ReactionAdded>(history) {
            return Ok(Vec::new());
        }
        let (target, name) = match (trigger.kind, trigger.comment_id) {
            (TriggerKind::ReviewComment, Some(id)) => (ReactionTarget::ReviewComment(id), "review_comment"),
            (TriggerKind::IssueComment | TriggerKind::PrComment, Some(id)) => {
                (ReactionTarget::IssueComment(id), "issue_comment")
            }
            _ => (ReactionTarget::Issue(trigger.number), "issue"),
        };
        let created = self.github.add_eyes(trigger.installation_id, &trigger.repository.full_name, target).await?;
        let added =
            ReactionAdded { trigger_id: trigger.trigger_id, target: name.to_owned(), reaction_id: Some(created.id) };
        Ok(vec![event(&added, ids.result(0))?])
    }

    async fn start_conversation(
        &self,
        trigger: &TriggerDetected,
        history: &[RecordedEvent],
        ids: &EventIds,
    ) -> Result<Vec<NewEvent>, StepError> {
        if has::<ConversationStarted>(history) || has::<TriggerRejected>(history) {
            return Ok(Vec::new());
        }
        let agent = self.agent.as_ref().ok_or_else(|| StepError::Invalid("AGENT_API_URL is not set".into()))?;
        let (installation, repo) = (trigger.installation_id, trigger.repository.full_name.as_str());
        let branch = if trigger.kind.is_pull_request() {
            match &trigger.head_branch {
                Some(branch) => Some(branch.clone()),
                None => Some(self.github.pull_request_branch(installation, repo, trigger.number).await?),
            }
        } else {
            None
        };
        // The intent comes first: should the call's outcome be unknown, the
        // stream says a conversation may exist for this trigger, and the next
        // attempt asks the runtime to look for it before starting one.
        let retrying = has::<ConversationRequested>(history);
        let requested = ConversationRequested {
            trigger_id: trigger.trigger_id,
            command_id: ids.0,
            repository: repo.to_owned(),
            branch: branch.clone(),
        };
        self.store
            .append(
                &streams::trigger(trigger.trigger_id),
                ExpectedVersion::StreamExists,
                vec![event(&requested, ids.result(1))?],
            )
            .await?;

        let issue = self.github.issue(installation, repo, trigger.number).await?;
        let comments = self.github.latest_comments(installation, repo, trigger.number).await?;
        let request = ConversationRequest {
            conversation_id: derived_id(&["conversation", &trigger.trigger_id.to_string()]),
            repository: repo.to_owned(),
            branch,
            pr_number: trigger.kind.is_pull_request().then_some(trigger.number),
            title: format!("{repo}#{}: {}", trigger.number, issue.title),
            message: trigger.message.clone(),
            instructions: instructions(trigger, &issue, &comments),
            github_token: None,
        };
        match agent.start(&request, retrying).await {
            Ok(StartOutcome::Started { conversation_id }) => {
                let conversation_url = agent.conversation_url(&conversation_id);
                let started = ConversationStarted { trigger_id: trigger.trigger_id, conversation_id, conversation_url };
                Ok(vec![event(&started, ids.result(0))?])
            }
            Ok(StartOutcome::Refused { reason }) => Self::reject(trigger, ids, "conversation_refused", reason),
            Err(e) => Err(e.into()),
        }
    }

    /// Posts `body` where the request was made, unless an earlier attempt
    /// of this command already did (its marker is in a recent comment).
    async fn reply_once(
        &self,
        trigger: &TriggerDetected,
        command: &Claimed,
        body: &str,
    ) -> Result<(u64, Option<String>), StepError> {
        let (installation, repo) = (trigger.installation_id, trigger.repository.full_name.as_str());
        let review_comment = match trigger.kind {
            // Replies go to the thread's first comment.
            TriggerKind::ReviewComment => trigger.thread_id.or(trigger.comment_id),
            _ => None,
        };
        let marker = marker(command.command_id);
        if command.attempts > 1 {
            let found =
                self.github.find_reply(installation, repo, trigger.number, review_comment.is_some(), &marker).await?;
            if let Some(found) = found {
                return Ok((found.id, found.html_url));
            }
        }
        let created = self
            .github
            .reply(installation, repo, trigger.number, review_comment, &format!("{body}\n\n{marker}"))
            .await?;
        Ok((created.id, created.html_url))
    }

    async fn post_acknowledgement(
        &self,
        trigger: &TriggerDetected,
        history: &[RecordedEvent],
        command: &Claimed,
        ids: &EventIds,
    ) -> Result<Vec<NewEvent>, StepError> {
        if has::<AcknowledgementPosted>(history) {
            return Ok(Vec::new());
        }
        let started = last::<ConversationStarted>(history)
            .ok_or_else(|| StepError::Invalid("no conversation was started".into()))?;
        let body = format!(
            "I'm on it! {} can [track my progress here]({}).",
            trigger.requester.login, started.conversation_url
        );
        let (comment_id, comment_url) = self.reply_once(trigger, command, &body).await?;
        let posted = AcknowledgementPosted { trigger_id: trigger.trigger_id, comment_id, comment_url };
        Ok(vec![event(&posted, ids.result(0))?])
    }

    async fn post_summary(
        &self,
        trigger: &TriggerDetected,
        history: &[RecordedEvent],
        command: &Claimed,
        ids: &EventIds,
    ) -> Result<Vec<NewEvent>, StepError> {
        if has::<SummaryPosted>(history) {
            return Ok(Vec::new());
        }
        let started = last::<ConversationStarted>(history);
        let (body, outcome) = match (last::<ConversationStatusChanged>(history), &started) {
            (Some(changed), Some(started)) => {
                let link = &started.conversation_url;
                match changed.agent_state.as_str() {
                    "finished" | "awaiting_user_input" => {
                        let summary =
                            match agent_events::last_agent_message(self.store.as_ref(), &started.conversation_id).await
                            {
                                Ok(Some(text)) => text,
                                Ok(None) => changed.last_message.clone().unwrap_or_else(|| "I'm done.".to_owned()),
                                Err(e) => return Err(StepError::NotYet(e.to_string())),
                            };
                        (
                            format!("{summary}\n\n[See the whole conversation here]({link})."),
                            changed.agent_state.clone(),
                        )
                    }
                    state => {
                        let reason = changed.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                        let body = format!(
                            "Sorry, I stopped before finishing (the agent ended in state `{state}`{reason}). \
                             [See the conversation here]({link})."
                        );
                        (body, state.to_owned())
                    }
                }
            }
            _ => match last::<TriggerRejected>(history) {
                Some(rejected) => (
                    format!("Sorry, I couldn't start working on this: {}.", rejected.message.trim_end_matches('.')),
                    rejected.reason,
                ),
                None => return Err(StepError::Invalid("nothing to report yet".into())),
            },
        };
        let (comment_id, _) = self.reply_once(trigger, command, &body).await?;
        let posted = SummaryPosted { trigger_id: trigger.trigger_id, comment_id, outcome };
        Ok(vec![event(&posted, ids.result(0))?])
    }

    async fn post_suggestion(
        &self,
        trigger: &TriggerDetected,
        history: &[RecordedEvent],
        command: &Claimed,
        ids: &EventIds,
    ) -> Result<Vec<NewEvent>, StepError> {
        if has::<SummaryPosted>(history) {
            return Ok(Vec::new());
        }
        if !self.github.is_configured() {
            return Self::reject(trigger, ids, "github_not_configured", "GITHUB_APP_ID and its key are not set".into());
        }
        let sha = trigger.head_sha.as_deref().ok_or_else(|| StepError::Invalid("no head sha".into()))?;
        let runs = self.github.workflow_runs(trigger.installation_id, &trigger.repository.full_name, sha).await?;
        if runs.iter().any(|r| r.status != "completed") {
            return Err(StepError::NotYet("workflow runs for this commit are still in progress".into()));
        }
        let failed: Vec<&str> =
            runs.iter().filter(|r| r.conclusion.as_deref() == Some("failure")).map(|r| r.name.as_str()).collect();
        if failed.is_empty() {
            return Self::reject(trigger, ids, "nothing_to_do", "no workflow run failed in the end".into());
        }
        let conflicts =
            self.github.mergeable(trigger.installation_id, &trigger.repository.full_name, trigger.number).await?
                == Some(false);
        let mut body = String::from("Some checks failed on this pull request:\n");
        for name in &failed {
            body.push_str(&format!("- {name}\n"));
        }
        if conflicts {
            body.push_str("\nIt also has merge conflicts with its base branch.\n");
        }
        body.push_str(&format!("\nMention {} in a comment and I'll try to fix this.", self.settings.rules.mention));
        let (comment_id, _) = self.reply_once(trigger, command, &body).await?;
        let posted = SummaryPosted { trigger_id: trigger.trigger_id, comment_id, outcome: "suggested".to_owned() };
        Ok(vec![event(&posted, ids.result(0))?])
    }

    /// Fetches a closed PR's figures from the GitHub API and records them as
    /// `PullRequestEnriched` (whose id is fixed by the command, so a retry
    /// after a crash finds it instead of fetching again).
    async fn enrich_pull_request(&self, pr: &PullRequestRef, ids: &EventIds) -> Result<Vec<NewEvent>, StepError> {
        let event_id = ids.result(0);
        let history = self.store.read_stream(&pr.stream(), 0, usize::MAX).await?;
        if history.iter().any(|e| e.event_id == event_id) {
            return Ok(Vec::new());
        }
        if !self.github.is_configured() {
            return Err(StepError::Invalid("GITHUB_APP_ID and its key are not set".into()));
        }
        let activity = self.github.pull_request_activity(pr.installation_id, &pr.repository, pr.number).await?;
        Ok(vec![event(&enriched(pr, &activity), event_id)?])
    }
}

/// The data collector's figures (REFERENCE.md, "Pull-request statistics")
/// from a PR's activity, whose lists hold each item once.
fn enriched(pr: &PullRequestRef, activity: &PullRequestActivity) -> PullRequestEnriched {
    let login = |user: &Option<crate::github::rest::User>| user.as_ref().map(|u| u.login.clone());
    let openhands_commits = activity
        .commits
        .iter()
        .filter(|c| {
            let name = c.commit.author.as_ref().and_then(|a| a.name.as_deref());
            is_openhands(c.author.as_ref().map(|a| a.login.as_str()), name)
        })
        .count();
    // Pending reviews are drafts only their author sees.
    let reviews: Vec<_> = activity.reviews.iter().filter(|r| r.state.as_deref() != Some("PENDING")).collect();
    let review_bodies: Vec<_> =
        reviews.iter().filter(|r| r.body.as_deref().is_some_and(|b| !b.trim().is_empty())).collect();
    let openhands_review_comments = activity
        .review_comments
        .iter()
        .map(|c| login(&c.user))
        .chain(review_bodies.iter().map(|r| login(&r.user)))
        .filter(|l| is_openhands(l.as_deref(), None))
        .count();
    let openhands_general_comments =
        activity.comments.iter().filter(|c| is_openhands(login(&c.user).as_deref(), None)).count();
    let reviewers: std::collections::BTreeSet<String> = reviews.iter().filter_map(|r| login(&r.user)).collect();
    PullRequestEnriched {
        repository_id: pr.repository_id,
        repository: pr.repository.clone(),
        number: pr.number,
        commits: activity.commits.len() as u64,
        openhands_commits: openhands_commits as u64,
        changed_files: activity.totals.changed_files,
        additions: activity.totals.additions,
        deletions: activity.totals.deletions,
        review_comments: (activity.review_comments.len() + review_bodies.len()) as u64,
        openhands_review_comments: openhands_review_comments as u64,
        general_comments: activity.comments.len() as u64,
        openhands_general_comments: openhands_general_comments as u64,
        reviewers: reviewers.into_iter().collect(),
    }
}

fn count_attempt(step: Step, outcome: &'static str) {
    metrics::counter!(crate::metrics::EXECUTOR_ATTEMPTS, "step" => step.as_str(), "outcome" => outcome).increment(1);
}

/// Event ids of a command's results: the same command always writes the same ids.
struct EventIds(Uuid);

impl EventIds {
    fn result(&self, n: u32) -> Uuid {
        derived_id(&[&self.0.to_string(), "result", &n.to_string()])
    }
}

fn event<T: DomainEvent>(value: &T, id: Uuid) -> Result<NewEvent, StepError> {
    value.to_new_event(id, None).map_err(|e| StepError::Invalid(e.to_string()))
}

fn has<T: DomainEvent>(history: &[RecordedEvent]) -> bool {
    history.iter().any(|e| e.event_type == T::TYPE)
}

fn last<T: DomainEvent>(history: &[RecordedEvent]) -> Option<T> {
    history.iter().rev().find(|e| e.event_type == T::TYPE).and_then(|e| T::decode(e).ok())
}

/// The hidden marker that lets a retried step find its own comment.
pub fn marker(command_id: Uuid) -> String {
    format!("{MARKER_PREFIX}{command_id} -->")
}

fn cut(text: &str, chars: usize) -> String {
    let mut cut: String = text.chars().take(chars).collect();
    if text.chars().count() > chars {
        cut.push('…');
    }
    cut
}

/// What the agent is told about the request: the issue or pull request, its
/// latest comments, and for an inline comment the file and line. It carries
/// the trigger id, so a conversation can be traced back to its trigger.
fn instructions(
    trigger: &TriggerDetected,
    issue: &crate::github::rest::Issue,
    comments: &[crate::github::rest::Comment],
) -> String {
    let what = if trigger.kind.is_pull_request() { "pull request" } else { "issue" };
    let mut text = format!(
        "You are working on {what} #{} in {}: {}\n\n{}\n",
        trigger.number,
        trigger.repository.full_name,
        issue.title,
        cut(issue.body.as_deref().unwrap_or(""), 4000)
    );
    if let (Some(path), Some(line)) = (&trigger.path, trigger.line) {
        text.push_str(&format!("\nThe request is an inline review comment on {path}, line {line}.\n"));
    }
    let recent: Vec<_> = comments.iter().rev().take(CONTEXT_COMMENTS).collect();
    if !recent.is_empty() {
        text.push_str("\nLatest comments, oldest first:\n");
        for comment in recent.into_iter().rev() {
            let author = comment.user.as_ref().map_or("someone", |u| u.login.as_str());
            text.push_str(&format!("- {author}: {}\n", cut(comment.body.as_deref().unwrap_or(""), COMMENT_CHARS)));
        }
    }
    text.push_str(&format!("\n(hookwise:{})\n", trigger.trigger_id));
    text
}
