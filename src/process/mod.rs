//! The process manager: turns deliveries that ask for the agent into one
//! trigger each, and each step's result into the next step's command. It only
//! decides; the [`executor`] acts. Commands go to the outbox in the same
//! transaction as the manager's checkpoint, with ids derived from (trigger,
//! step), so a replay or a retry can never enqueue a step twice.

pub mod agent_events;
pub mod executor;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{
    derived_id, streams, AgentEventsReceived, AgentServerEventReceived, ConversationStarted, ConversationStatusChanged,
    DomainEvent, PermissionChecked, TriggerDetected, TriggerRejected, TriggerRetried, WebhookReceived,
};
use crate::github::classify::{classify, TriggerRules};
use crate::projections::runner::{EventHandler, HandlerError};
use crate::sql::{Migration, Statement};
use crate::sql_params;
use crate::store::{now_micros, EventStore, ExpectedVersion, RecordedEvent, StoreError};

pub const NAME: &str = "process_manager";

const MIGRATIONS: &[Migration] = &[
    (
        1,
        "CREATE TABLE outbox (
        command_id TEXT PRIMARY KEY,
        trigger_id TEXT NOT NULL,
        step TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        due_at BIGINT NOT NULL,
        claimed_until BIGINT,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX outbox_due ON outbox (status, due_at);
    CREATE TABLE agent_conversations (
        conversation_id TEXT PRIMARY KEY,
        trigger_id TEXT NOT NULL
    );",
    ),
    (
        2,
        "ALTER TABLE outbox ADD COLUMN arguments TEXT;
    CREATE TABLE agent_repositories (
        repository_id BIGINT PRIMARY KEY
    );",
    ),
    // The admin API finds a pull request's enrichment by its subject id.
    (3, "CREATE INDEX outbox_subject ON outbox (trigger_id)"),
];

/// The steps of a trigger, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Installation present and not suspended; the requester may write.
    CheckPermission,
    /// 👀 where the request was made.
    AddReaction,
    StartConversation,
    /// "I'm on it!" with the conversation link.
    PostAcknowledgement,
    /// The agent's result, or a short reply naming why there is none.
    PostSummary,
    /// Failed runs: one suggestion comment once every run for the sha is done.
    PostSuggestion,
    /// Not a trigger's step: a closed PR's figures from the GitHub API
    /// (`PullRequestEnriched`). Its outbox row's `trigger_id` is the PR's
    /// [`pull_request_subject`] and its `arguments` the [`PullRequestRef`].
    EnrichPullRequest,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CheckPermission => "check_permission",
            Step::AddReaction => "add_reaction",
            Step::StartConversation => "start_conversation",
            Step::PostAcknowledgement => "post_acknowledgement",
            Step::PostSummary => "post_summary",
            Step::PostSuggestion => "post_suggestion",
            Step::EnrichPullRequest => "enrich_pull_request",
        }
    }

    pub fn parse(step: &str) -> Option<Step> {
        [
            Step::CheckPermission,
            Step::AddReaction,
            Step::StartConversation,
            Step::PostAcknowledgement,
            Step::PostSummary,
            Step::PostSuggestion,
            Step::EnrichPullRequest,
        ]
        .into_iter()
        .find(|s| s.as_str() == step)
    }
}

/// The command id of a step: the same decision always yields the same id.
/// A retry asked by an admin is a new command.
pub fn command_id(trigger_id: Uuid, step: Step, retry: u32) -> Uuid {
    if retry == 0 {
        derived_id(&["command", &trigger_id.to_string(), step.as_str()])
    } else {
        derived_id(&["command", &trigger_id.to_string(), step.as_str(), &retry.to_string()])
    }
}

/// The outbox row of a command; a second insert of the same command is a no-op.
pub fn enqueue(trigger_id: Uuid, step: Step, retry: u32) -> Statement {
    let now = now_micros();
    Statement::new(
        "INSERT INTO outbox (command_id, trigger_id, step, status, attempts, due_at, created_at, updated_at)
         VALUES (?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (command_id) DO NOTHING",
        sql_params![
            command_id(trigger_id, step, retry).to_string(),
            trigger_id.to_string(),
            step.as_str(),
            now,
            now,
            now
        ],
    )
}

/// What the executor needs to enrich a closed PR, kept as its outbox row's
/// `arguments` (JSON): PR commands belong to no trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestRef {
    pub installation_id: u64,
    pub repository_id: u64,
    /// `owner/name`.
    pub repository: String,
    pub number: u64,
}

impl PullRequestRef {
    pub fn stream(&self) -> String {
        streams::pull_request(self.repository_id, self.number)
    }
}

/// The outbox `trigger_id` of a PR's enrichment: one per closing (a PR
/// reopened and closed again is enriched again; a redelivery of the same
/// closing is not).
pub fn pull_request_subject(repository_id: u64, number: u64, closed_at: &str) -> Uuid {
    derived_id(&["pull-request", &repository_id.to_string(), &number.to_string(), closed_at])
}

/// Enqueues an admin's retry of an abandoned enrichment: a new command with
/// the first one's pull request (its outbox row is derived from the log, so a
/// replay finds it there too).
fn enqueue_enrichment_retry(subject: Uuid, retry: u32) -> Statement {
    let now = now_micros();
    Statement::new(
        "INSERT INTO outbox (command_id, trigger_id, step, status, attempts, due_at, created_at, updated_at, arguments)
         SELECT CAST(? AS TEXT), trigger_id, step, 'pending', 0, CAST(? AS BIGINT), CAST(? AS BIGINT),
            CAST(? AS BIGINT), arguments
         FROM outbox WHERE command_id = ?
         ON CONFLICT (command_id) DO NOTHING",
        sql_params![
            command_id(subject, Step::EnrichPullRequest, retry).to_string(),
            now,
            now,
            now,
            command_id(subject, Step::EnrichPullRequest, 0).to_string()
        ],
    )
}

/// Enqueues the enrichment of a PR that just closed, only if the agent has
/// acted in its repository: a trigger there reached `ConversationStarted`
/// earlier in the log (see [`record_agent_repository`]). Decided in SQL
/// because the rows of the same batch are not visible to the handler; as
/// `agent_repositories` is derived from the log in log order, a replay
/// decides the same for every closing.
fn enqueue_enrichment(pr: &PullRequestRef, closed_at: &str) -> Result<Statement, HandlerError> {
    let subject = pull_request_subject(pr.repository_id, pr.number, closed_at);
    let arguments = serde_json::to_string(pr).map_err(|e| HandlerError::Other(e.to_string()))?;
    let now = now_micros();
    Ok(Statement::new(
        "INSERT INTO outbox (command_id, trigger_id, step, status, attempts, due_at, created_at, updated_at, arguments)
         SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), 'pending', 0, CAST(? AS BIGINT),
            CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT)
         WHERE EXISTS (SELECT 1 FROM agent_repositories WHERE repository_id = ?)
         ON CONFLICT (command_id) DO NOTHING",
        sql_params![
            command_id(subject, Step::EnrichPullRequest, 0).to_string(),
            subject.to_string(),
            Step::EnrichPullRequest.as_str(),
            now,
            now,
            now,
            arguments,
            pr.repository_id
        ],
    ))
}

/// Marks a repository as one where the agent has acted (a conversation
/// started there). Idempotent.
fn record_agent_repository(repository_id: u64) -> Statement {
    Statement::new(
        "INSERT INTO agent_repositories (repository_id) VALUES (?) ON CONFLICT (repository_id) DO NOTHING",
        sql_params![repository_id],
    )
}

#[derive(Deserialize)]
struct ClosedPullRequest {
    number: u64,
    closed_at: Option<String>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    pull_request: ClosedPullRequest,
}

/// Records which trigger a conversation (with a `ConversationStarted` in the
/// log) belongs to, so its callbacks are accepted. Idempotent.
pub fn map_conversation(conversation_id: &str, trigger_id: Uuid) -> Statement {
    Statement::new(
        "INSERT INTO agent_conversations (conversation_id, trigger_id) VALUES (?, ?)
         ON CONFLICT (conversation_id) DO NOTHING",
        sql_params![conversation_id, trigger_id.to_string()],
    )
}

/// Agent states that end a job: the first two with a summary, the rest with
/// a short reply naming the state.
pub const FINAL_AGENT_STATES: &[&str] =
    &["finished", "awaiting_user_input", "error", "rate_limited", "stopped", "rejected", "stuck"];

pub struct ProcessManager {
    store: Arc<dyn EventStore>,
    rules: TriggerRules,
}

impl ProcessManager {
    pub fn new(store: Arc<dyn EventStore>, rules: TriggerRules) -> Self {
        ProcessManager { store, rules }
    }

    /// Records the trigger a delivery asks for. `NoStream`: the first
    /// delivery that asks wins; a redelivery, the same comment through
    /// another hook, or a replay finds the stream and does nothing.
    async fn detect(&self, event: &RecordedEvent, received: &WebhookReceived) -> Result<(), HandlerError> {
        let Some(payload) = event.payload.as_deref() else { return Ok(()) };
        let Some(trigger) = classify(received, payload, &event.stream, event.position.0, &self.rules) else {
            return Ok(());
        };
        let event_id = derived_id(&["trigger-detected", &trigger.trigger_id.to_string()]);
        let new_event = trigger.to_new_event(event_id, None).map_err(|e| HandlerError::Other(e.to_string()))?;
        match self.store.append(&streams::trigger(trigger.trigger_id), ExpectedVersion::NoStream, vec![new_event]).await
        {
            Ok(_) | Err(StoreError::WrongExpectedVersion { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A `pull_request.closed` delivery: the PR's enrichment, where the agent has acted.
    fn closed_pull_request(event: &RecordedEvent, received: &WebhookReceived) -> Result<Vec<Statement>, HandlerError> {
        let (Some(installation_id), Some(repository)) = (received.installation_id, &received.repository) else {
            return Ok(Vec::new());
        };
        let Some(payload) = event.payload.as_deref().and_then(|p| serde_json::from_slice::<PullRequestPayload>(p).ok())
        else {
            return Ok(Vec::new());
        };
        let pr = PullRequestRef {
            installation_id,
            repository_id: repository.id,
            repository: repository.full_name.clone(),
            number: payload.pull_request.number,
        };
        Ok(vec![enqueue_enrichment(&pr, payload.pull_request.closed_at.as_deref().unwrap_or(""))?])
    }

    /// The repository of a trigger, from its `TriggerDetected`.
    async fn trigger_repository(&self, trigger_id: Uuid) -> Result<Option<u64>, HandlerError> {
        let first = self.store.read_stream(&streams::trigger(trigger_id), 0, 1).await?;
        Ok(first.first().and_then(|e| TriggerDetected::decode(e).ok()).map(|t| t.repository.id))
    }
}

fn decode<T: DomainEvent>(event: &RecordedEvent) -> Result<T, HandlerError> {
    T::decode(event).map_err(|e| HandlerError::Other(format!("{} at {}: {e}", event.event_type, event.position)))
}

#[async_trait]
impl EventHandler for ProcessManager {
    fn name(&self) -> &'static str {
        NAME
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        Ok(match event.event_type.as_str() {
            WebhookReceived::TYPE => {
                let received: WebhookReceived = decode(event)?;
                self.detect(event, &received).await?;
                if received.event == "pull_request" && received.action.as_deref() == Some("closed") {
                    Self::closed_pull_request(event, &received)?
                } else {
                    Vec::new()
                }
            }
            TriggerDetected::TYPE => {
                let detected: TriggerDetected = decode(event)?;
                let first = if detected.kind == crate::events::TriggerKind::FailedWorkflow {
                    Step::PostSuggestion
                } else {
                    Step::CheckPermission
                };
                vec![enqueue(detected.trigger_id, first, 0)]
            }
            PermissionChecked::TYPE => {
                let checked: PermissionChecked = decode(event)?;
                if checked.granted {
                    vec![enqueue(checked.trigger_id, Step::AddReaction, 0)]
                } else {
                    Vec::new()
                }
            }
            crate::events::ReactionAdded::TYPE => {
                let added: crate::events::ReactionAdded = decode(event)?;
                vec![enqueue(added.trigger_id, Step::StartConversation, 0)]
            }
            ConversationStarted::TYPE => {
                let started: ConversationStarted = decode(event)?;
                let mut statements = vec![
                    enqueue(started.trigger_id, Step::PostAcknowledgement, 0),
                    map_conversation(&started.conversation_id, started.trigger_id),
                ];
                if let Some(repository_id) = self.trigger_repository(started.trigger_id).await? {
                    statements.push(record_agent_repository(repository_id));
                }
                statements
            }
            ConversationStatusChanged::TYPE => {
                let changed: ConversationStatusChanged = decode(event)?;
                if FINAL_AGENT_STATES.contains(&changed.agent_state.as_str()) {
                    vec![enqueue(changed.trigger_id, Step::PostSummary, 0)]
                } else {
                    Vec::new()
                }
            }
            TriggerRejected::TYPE => {
                let rejected: TriggerRejected = decode(event)?;
                // The agent refused to start: say so where the request was made.
                if rejected.reason == "conversation_refused" {
                    vec![enqueue(rejected.trigger_id, Step::PostSummary, 0)]
                } else {
                    Vec::new()
                }
            }
            TriggerRetried::TYPE => {
                let retried: TriggerRetried = decode(event)?;
                match Step::parse(&retried.step) {
                    Some(Step::EnrichPullRequest) => vec![enqueue_enrichment_retry(retried.trigger_id, retried.retry)],
                    Some(step) => vec![enqueue(retried.trigger_id, step, retried.retry)],
                    None => Vec::new(),
                }
            }
            AgentEventsReceived::TYPE => {
                let received: AgentEventsReceived = decode(event)?;
                agent_events::record_state_changes(self.store.as_ref(), &received).await?;
                Vec::new()
            }
            AgentServerEventReceived::TYPE => {
                let received: AgentServerEventReceived = decode(event)?;
                agent_events::record_agent_server_event(self.store.as_ref(), &received).await?;
                Vec::new()
            }
            _ => Vec::new(),
        })
    }
}
