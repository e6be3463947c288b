//! The executor: the only place that calls GitHub or the agent runtime. It
//! claims due outbox commands ([`super::outbox`]), folds the trigger's stream
//! into a [`TriggerState`], performs the step (one file per step), and
//! appends the step's result with event ids derived from the command id
//! ([`ResultIds`]), so a crash after the call but before the row is marked
//! done cannot record anything twice. A step the state says is done is not
//! performed again; where the remote side cannot deduplicate (comments), a
//! retried step first looks for its hidden marker.

mod abandonment;
mod acknowledgement;
mod context;
mod conversation;
mod enrichment;
mod permission;
mod queued_notice;
mod reaction;
mod reply;
mod repository_settings;
mod stop;
mod suggestion;
mod summary;
pub mod wording;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::outbox::{self, Claimed, Command, ExecutorWake, OutboxStatus, MAX_RETRY_DELAY};
use crate::agent::{AgentError, AgentRuntime};
use crate::config::ProcessSettings;
use crate::events::pull_request::{EnrichmentAbandoned, EnrichmentFailed};
use crate::events::{
    derived_id, streams, ConversationStarted, DomainEvent, StepFailed, TriggerAbandoned, TriggerDetected,
    TriggerRejected,
};
use crate::github::client::{GitHubClient, GitHubError};
use crate::sql::{SqlDb, SqlError};
use crate::store::{now_micros, EventStore, ExpectedVersion, NewEvent, StoreError};
use crate::triggers::{Step, TriggerState};

/// The longest an idle executor waits without a wake-up before it looks for
/// due commands anyway: the safety net under the wake-ups (a command enqueued
/// by another process on SQLite, a NOTIFY lost with its connection, a claim
/// of a dead instance running out).
const SAFETY_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// Not possible yet (e.g. workflow runs still in progress): tried again, counted.
    #[error("{0}")]
    NotYet(String),
    /// Never possible: abandoned at once.
    #[error("{0}")]
    Invalid(String),
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
}

impl StepError {
    fn is_retryable(&self) -> bool {
        match self {
            StepError::GitHub(e) => e.is_retryable(),
            StepError::Agent(e) => e.is_retryable(),
            StepError::Store(_) | StepError::Sql(_) | StepError::NotYet(_) => true,
            StepError::Invalid(_) | StepError::Encode(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            StepError::GitHub(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// What performing a step came to.
pub(crate) enum StepOutcome {
    /// Done: these events record it (none when it was done already).
    Done(Vec<NewEvent>),
    /// Nothing to record yet: look again after this long (not an attempt).
    Later(Duration),
}

/// Event ids of a command's results: the same command always writes the
/// same ids. The numbers are part of the log's format (ids already stored
/// were derived with them), so they never change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResultIds(Uuid);

impl ResultIds {
    fn numbered(self, n: u32) -> Uuid {
        derived_id(&[&self.0.to_string(), "result", &n.to_string()])
    }

    /// The step's own result (`PermissionChecked`, `ReactionAdded`, …).
    pub fn outcome(self) -> Uuid {
        self.numbered(0)
    }

    /// `ConversationRequested`: the intent recorded before the runtime is called.
    pub fn intent(self) -> Uuid {
        self.numbered(1)
    }

    /// `TriggerRejected`.
    pub fn rejection(self) -> Uuid {
        self.numbered(9)
    }
}

/// What every step may use.
pub(crate) struct StepContext<'a> {
    pub store: &'a dyn EventStore,
    pub db: &'a SqlDb,
    pub github: &'a GitHubClient,
    pub agent: Option<&'a dyn AgentRuntime>,
    pub settings: &'a ProcessSettings,
    pub command_id: Uuid,
    /// This attempt's number (1 for the first).
    pub attempts: u32,
    pub ids: ResultIds,
}

impl StepContext<'_> {
    /// The rejection of `trigger` with a stable reason code.
    pub fn reject(&self, trigger: &TriggerDetected, reason: &str, message: String) -> Result<StepOutcome, StepError> {
        let rejected = TriggerRejected { trigger_id: trigger.trigger_id, reason: reason.to_owned(), message };
        Ok(StepOutcome::Done(vec![rejected.to_new_event(self.ids.rejection(), None)?]))
    }
}

/// `value` as a new event with `id`.
pub(crate) fn event<T: DomainEvent>(value: &T, id: Uuid) -> Result<NewEvent, StepError> {
    Ok(value.to_new_event(id, None)?)
}

pub struct Executor {
    store: Arc<dyn EventStore>,
    db: SqlDb,
    github: Arc<GitHubClient>,
    agent: Option<Arc<dyn AgentRuntime>>,
    settings: ProcessSettings,
    wake: ExecutorWake,
}

impl Executor {
    /// `wake` is how the process manager of this instance says commands were enqueued.
    pub fn new(store: Arc<dyn EventStore>, db: SqlDb, settings: ProcessSettings, wake: ExecutorWake) -> Self {
        let github = Arc::new(GitHubClient::new(&settings.github_api_url, settings.github.clone()));
        let agent = settings.agent.as_ref().map(crate::agent::build);
        Executor { store, db, github, agent, settings, wake }
    }

    /// Performs due commands, up to `executor_concurrency` at once, until
    /// `stop` turns true; then lets those in flight finish. A claim never
    /// takes a command whose trigger has another one in flight
    /// ([`outbox::claim`]), so one slow call holds up only its own trigger.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let concurrency = self.settings.executor_concurrency.max(1);
        let wake = self.wake.clone();
        let listener = {
            let wake = wake.clone();
            self.db.listen(outbox::WAKE_CHANNEL, move || wake.wake())
        };
        let executor = Arc::new(self);
        let mut in_flight = JoinSet::new();
        // The subject of each step in flight, by its task.
        let mut subjects: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        while !*stop.borrow() {
            let mut idle_for = None;
            while in_flight.len() < concurrency {
                let busy: Vec<Uuid> = subjects.values().copied().collect();
                match outbox::claim(&executor.db, executor.settings.claim_lease, &busy).await {
                    Ok(Some(command)) => {
                        let subject = command.command.subject();
                        let executor = executor.clone();
                        let task = in_flight.spawn(async move { executor.perform(command).await });
                        subjects.insert(task.id(), subject);
                    }
                    Ok(None) => {
                        idle_for = Some(executor.idle_wait().await);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming an outbox command failed");
                        idle_for = Some(SAFETY_POLL);
                        break;
                    }
                }
            }
            let idle = tokio::time::sleep(idle_for.unwrap_or(SAFETY_POLL));
            tokio::select! {
                Some(ended) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    subjects.remove(&ended_task(ended));
                }
                _ = wake.woken() => {}
                _ = idle, if idle_for.is_some() => {}
                _ = stop.changed() => break,
            }
        }
        while let Some(ended) = in_flight.join_next_with_id().await {
            ended_task(ended);
        }
        if let Some(listener) = listener {
            listener.abort();
        }
    }

    /// How long to wait, short of a wake-up, when nothing is claimable: until
    /// the next command falls due, at most [`SAFETY_POLL`]. A command due
    /// already but not claimable waits for its trigger's step in flight, whose
    /// end wakes the loop.
    async fn idle_wait(&self) -> Duration {
        match outbox::next_due(&self.db).await {
            Ok(Some(due)) if due > now_micros() => {
                Duration::from_micros((due - now_micros()).max(0) as u64).min(SAFETY_POLL)
            }
            Ok(_) => SAFETY_POLL,
            Err(e) => {
                tracing::warn!(error = %e, "reading when the next outbox command is due failed");
                SAFETY_POLL
            }
        }
    }

    async fn perform(&self, claimed: Claimed) {
        let result = match self.perform_step(&claimed).await {
            Ok(StepOutcome::Done(events)) => self.finish(&claimed, events).await,
            Ok(StepOutcome::Later(after)) => {
                count_attempt(&claimed, "later");
                let due = now_micros() + after.as_micros() as i64;
                outbox::defer(&self.db, claimed.command_id, due).await.map_err(StepError::from)
            }
            Err(e) => self.fail(&claimed, e).await,
        };
        if let Err(e) = result {
            // The lease runs out and the command is tried again; its events are idempotent.
            tracing::warn!(command = %claimed.command_id, error = %e, "recording a step's outcome failed");
        }
    }

    async fn perform_step(&self, claimed: &Claimed) -> Result<StepOutcome, StepError> {
        let context = StepContext {
            store: self.store.as_ref(),
            db: &self.db,
            github: self.github.as_ref(),
            agent: self.agent.as_deref(),
            settings: &self.settings,
            command_id: claimed.command_id,
            attempts: claimed.attempts,
            ids: ResultIds(claimed.command_id),
        };
        let (trigger_id, step) = match &claimed.command {
            Command::Enrichment { pull_request, .. } => return enrichment::perform(&context, pull_request).await,
            Command::Trigger { trigger_id, step: Step::StopConversation } => {
                return stop::perform(&context, *trigger_id).await
            }
            Command::RepositorySettings { repository, .. } => {
                return repository_settings::perform(&context, repository).await
            }
            Command::Trigger { trigger_id, step } => (*trigger_id, *step),
        };
        let history = self.store.read_stream(&streams::trigger(trigger_id), 0, usize::MAX).await?;
        let state =
            TriggerState::fold(&history).map_err(|e| StepError::Invalid(format!("trigger {trigger_id}: {e}")))?;
        let trigger = state
            .detected
            .clone()
            .ok_or_else(|| StepError::Invalid("the trigger stream has no TriggerDetected".into()))?;
        if state.has_done(step) {
            return Ok(StepOutcome::Done(Vec::new()));
        }
        match step {
            Step::CheckPermission => permission::perform(&context, &trigger).await,
            Step::AddReaction => reaction::perform(&context, &trigger).await,
            Step::StartConversation => conversation::start(&context, &trigger, &state).await,
            Step::PostAcknowledgement => acknowledgement::perform(&context, &trigger, &state).await,
            Step::FollowConversation => conversation::follow(&context, &state).await,
            Step::PostSummary => summary::perform(&context, &trigger, &state).await,
            Step::PostSuggestion => suggestion::perform(&context, &trigger).await,
            Step::ReportAbandonment => abandonment::perform(&context, &trigger, &state).await,
            Step::PostQueuedNotice => queued_notice::perform(&context, &trigger).await,
            Step::StopConversation => Err(StepError::Invalid("a stop is not a trigger's step".into())),
        }
    }

    /// Where a command's results and failures go: its trigger's stream, or
    /// the PR's own stream (which may not exist yet).
    fn stream(command: &Command) -> (String, ExpectedVersion) {
        match command {
            Command::Enrichment { pull_request, .. } => (pull_request.stream(), ExpectedVersion::Any),
            Command::Trigger { trigger_id, step: Step::StopConversation } => {
                (streams::stop(*trigger_id), ExpectedVersion::StreamExists)
            }
            Command::RepositorySettings { repository, .. } => {
                (streams::repository(repository.repository_id), ExpectedVersion::Any)
            }
            Command::Trigger { trigger_id, .. } => (streams::trigger(*trigger_id), ExpectedVersion::StreamExists),
        }
    }

    async fn finish(&self, claimed: &Claimed, events: Vec<NewEvent>) -> Result<(), StepError> {
        count_attempt(claimed, "done");
        // The runtime may call back as soon as the conversation exists; map it
        // now rather than when the process manager catches up (which it also does).
        let started: Vec<ConversationStarted> = events
            .iter()
            .filter(|e| e.event_type == ConversationStarted::TYPE)
            .filter_map(|e| serde_json::from_slice(&e.data).ok())
            .collect();
        if !events.is_empty() {
            let (stream, expected) = Self::stream(&claimed.command);
            self.store.append(&stream, expected, events).await?;
        }
        if !started.is_empty() {
            let rows = started.iter().map(|s| super::map_conversation(&s.conversation_id, s.trigger_id)).collect();
            self.db.write(rows).await?;
        }
        Ok(outbox::mark(&self.db, claimed.command_id, OutboxStatus::Done, None, None).await?)
    }

    async fn fail(&self, claimed: &Claimed, error: StepError) -> Result<(), StepError> {
        let message = error.to_string();
        let (subject, step) = (claimed.command.subject(), claimed.command.step_name());
        tracing::warn!(subject = %subject, step, attempt = claimed.attempts, error = %message, "step failed");
        let (stream, expected) = Self::stream(&claimed.command);
        let attempt = claimed.attempts.to_string();
        let enrichment = matches!(claimed.command, Command::Enrichment { .. });
        if matches!(claimed.command, Command::RepositorySettings { .. }) {
            // A reading that failed leaves the settings as they were; it is no
            // trigger's, so only its outbox row (and the log above) tells of it.
            return self.fail_quietly(claimed, &error, message).await;
        }
        if error.is_retryable() && claimed.attempts < self.settings.retry_max_attempts {
            let delay = error
                .retry_after()
                .unwrap_or_else(|| outbox::backoff(self.settings.retry_base, claimed.attempts))
                .min(MAX_RETRY_DELAY);
            let retry_at = now_micros() + delay.as_micros() as i64;
            let id = derived_id(&[&claimed.command_id.to_string(), "failed", &attempt]);
            let failed = if enrichment {
                let failed = EnrichmentFailed {
                    subject_id: subject,
                    attempt: claimed.attempts,
                    error: message.clone(),
                    retry_at_micros: retry_at,
                };
                event(&failed, id)?
            } else {
                let failed = StepFailed {
                    trigger_id: subject,
                    step: step.to_owned(),
                    attempt: claimed.attempts,
                    error: message.clone(),
                    retry_at_micros: retry_at,
                };
                event(&failed, id)?
            };
            count_attempt(claimed, "retry");
            self.store.append(&stream, expected, vec![failed]).await?;
            Ok(outbox::mark(&self.db, claimed.command_id, OutboxStatus::Pending, Some(retry_at), Some(&message))
                .await?)
        } else {
            let id = derived_id(&[&claimed.command_id.to_string(), "abandoned", &attempt]);
            let abandoned = if enrichment {
                let abandoned =
                    EnrichmentAbandoned { subject_id: subject, error: message.clone(), attempts: claimed.attempts };
                event(&abandoned, id)?
            } else {
                let abandoned = TriggerAbandoned {
                    trigger_id: subject,
                    step: step.to_owned(),
                    error: message.clone(),
                    attempts: claimed.attempts,
                };
                event(&abandoned, id)?
            };
            count_attempt(claimed, "abandoned");
            self.store.append(&stream, expected, vec![abandoned]).await?;
            Ok(outbox::mark(&self.db, claimed.command_id, OutboxStatus::Abandoned, None, Some(&message)).await?)
        }
    }
}

impl Executor {
    async fn fail_quietly(&self, claimed: &Claimed, error: &StepError, message: String) -> Result<(), StepError> {
        if error.is_retryable() && claimed.attempts < self.settings.retry_max_attempts {
            let delay = error
                .retry_after()
                .unwrap_or_else(|| outbox::backoff(self.settings.retry_base, claimed.attempts))
                .min(MAX_RETRY_DELAY);
            let retry_at = now_micros() + delay.as_micros() as i64;
            count_attempt(claimed, "retry");
            Ok(outbox::mark(&self.db, claimed.command_id, OutboxStatus::Pending, Some(retry_at), Some(&message))
                .await?)
        } else {
            count_attempt(claimed, "abandoned");
            Ok(outbox::mark(&self.db, claimed.command_id, OutboxStatus::Abandoned, None, Some(&message)).await?)
        }
    }
}

/// The task of a step that ended; one that panicked is logged (its claim
/// runs out and it is tried again).
fn ended_task(ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match ended {
        Ok((task, ())) => task,
        Err(e) => {
            tracing::error!(error = %e, "an executor step panicked");
            e.id()
        }
    }
}

fn count_attempt(claimed: &Claimed, outcome: &'static str) {
    metrics::counter!(crate::metrics::EXECUTOR_ATTEMPTS, "step" => claimed.command.step_name(), "outcome" => outcome)
        .increment(1);
}
