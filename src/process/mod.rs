//! The process manager: turns deliveries that ask for the agent into one
//! trigger each and, after every event of a trigger, folds its stream and
//! enqueues the step that comes next (`triggers::next_step`). It only decides;
//! the [`executor`] acts. Commands go to the [`outbox`] in the same
//! transaction as the manager's checkpoint, with ids derived from (trigger,
//! step, admin retries), so a replay or a redelivery can never enqueue a step
//! twice.

pub mod agent_events;
pub mod enrichment;
pub mod executor;
pub mod explain;
pub mod outbox;
pub mod repository_settings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::pull_request::EnrichmentRetried;
use crate::events::{
    derived_id, streams, AgentEventsReceived, AgentServerEventReceived, DomainEvent, StopRequested, TriggerDetected,
    TriggerKind, TriggerRejected, TriggerRetried, WebhookReceived,
};
use crate::runner::{EventHandler, HandlerError};
use crate::sql::{coalesce_inserts, Dialect, Migration, Statement};
use crate::sql_params;
use crate::store::{EventStore, ExpectedVersion, RecordedEvent, StoreError};
use crate::triggers::classify::{classify, TriggerRules};
use crate::triggers::limits::{self, Admission, DailyAdmissions, DailyLimits, LimitsClock, RunningLimits, RunningTurn};
use crate::triggers::stop::{self, StopState};
use crate::triggers::thread::{self, InLine, PerThread, ThreadEvent, ThreadState};
use crate::triggers::{next_step, Step, TriggerEvent, TriggerState};
use outbox::{enqueue, enqueue_enrichment, enqueue_enrichment_retry, enqueue_settings_read, ExecutorWake};

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
    // An enrichment's subject gets a column of its own instead of borrowing
    // `trigger_id` (now NULL for it).
    (
        4,
        "CREATE TABLE outbox_v4 (
        command_id TEXT PRIMARY KEY,
        trigger_id TEXT,
        subject_id TEXT,
        step TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        due_at BIGINT NOT NULL,
        claimed_until BIGINT,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        arguments TEXT
    );
    INSERT INTO outbox_v4 (command_id, trigger_id, subject_id, step, status, attempts, due_at, claimed_until,
        last_error, created_at, updated_at, arguments)
    SELECT command_id,
        CASE WHEN step = 'enrich_pull_request' THEN NULL ELSE trigger_id END,
        CASE WHEN step = 'enrich_pull_request' THEN trigger_id ELSE NULL END,
        step, status, attempts, due_at, claimed_until, last_error, created_at, updated_at, arguments
    FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v4 RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (status, due_at);
    CREATE INDEX outbox_by_trigger ON outbox (trigger_id);
    CREATE INDEX outbox_by_subject ON outbox (subject_id);",
    ),
];

/// The command id of a step: the same decision always yields the same id.
/// A retry asked by an admin is a new command.
pub fn command_id(trigger_id: Uuid, step: Step, retry: u32) -> Uuid {
    derive_command_id(trigger_id, step.as_str(), retry)
}

/// The command id of a pull request's enrichment (by its subject id).
pub fn enrichment_command_id(subject: Uuid, retry: u32) -> Uuid {
    derive_command_id(subject, ENRICH_PULL_REQUEST, retry)
}

/// The outbox step of a pull request's enrichment, which is no trigger's step.
pub const ENRICH_PULL_REQUEST: &str = "enrich_pull_request";

pub(crate) fn derive_command_id(subject: Uuid, step: &str, retry: u32) -> Uuid {
    if retry == 0 {
        derived_id(&["command", &subject.to_string(), step])
    } else {
        derived_id(&["command", &subject.to_string(), step, &retry.to_string()])
    }
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

/// The subject id of a PR's enrichment (its outbox row's `subject_id`): one per closing (a PR
/// reopened and closed again is enriched again; a redelivery of the same
/// closing is not).
pub fn pull_request_subject(repository_id: u64, number: u64, closed_at: &str) -> Uuid {
    derived_id(&["pull-request", &repository_id.to_string(), &number.to_string(), closed_at])
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

pub struct ProcessManager {
    store: Arc<dyn EventStore>,
    rules: TriggerRules,
    /// This instance's executor, woken when a batch that enqueued commits.
    wake: ExecutorWake,
    /// On PostgreSQL, such a batch also notifies every instance's executor.
    dialect: Dialect,
    /// Whether the batch being committed writes anything (set by `compact`).
    batch_writes: AtomicBool,
    /// `HOOKWISE_PER_THREAD`: whether a start waits for its thread's line.
    per_thread: PerThread,
    /// `HOOKWISE_MAX_PER_{USER,REPO}_PER_DAY`, and the clock they count by.
    daily_limits: DailyLimits,
    limits_clock: LimitsClock,
    /// `HOOKWISE_MAX_RUNNING`, `HOOKWISE_MAX_RUNNING_PER_REPO`.
    running_limits: RunningLimits,
    /// `HOOKWISE_MAX_PROACTIVE_PER_PR` (0: no limit).
    max_proactive_per_pr: u32,
}

impl ProcessManager {
    pub fn new(store: Arc<dyn EventStore>, rules: TriggerRules, wake: ExecutorWake, dialect: Dialect) -> Self {
        ProcessManager {
            store,
            rules,
            wake,
            dialect,
            batch_writes: AtomicBool::new(false),
            per_thread: PerThread::Queue,
            daily_limits: DailyLimits::default(),
            limits_clock: LimitsClock::default(),
            running_limits: RunningLimits::default(),
            max_proactive_per_pr: 0,
        }
    }

    /// With the operator's running limits (none by default).
    pub fn with_running_limits(mut self, limits: RunningLimits, max_proactive_per_pr: u32) -> Self {
        self.running_limits = limits;
        self.max_proactive_per_pr = max_proactive_per_pr;
        self
    }

    /// With the operator's daily limits (none by default).
    pub fn with_daily_limits(mut self, limits: DailyLimits, clock: LimitsClock) -> Self {
        self.daily_limits = limits;
        self.limits_clock = clock;
        self
    }

    /// With `HOOKWISE_PER_THREAD` (the default is `queue`).
    pub fn with_per_thread(mut self, per_thread: PerThread) -> Self {
        self.per_thread = per_thread;
        self
    }

    /// Records the trigger a delivery asks for, by the operator's rules with
    /// the repository's settings as the log has them before the delivery
    /// ([`repository_settings`]), and returns the settings reading it asks
    /// for. `NoStream`: the first delivery that asks wins; a redelivery, the
    /// same comment through another hook, or a replay finds the stream and
    /// does nothing.
    async fn detect(&self, event: &RecordedEvent, received: &WebhookReceived) -> Result<Vec<Statement>, HandlerError> {
        let Some(payload) = event.payload.as_deref() else { return Ok(Vec::new()) };
        let (rules, in_force, read) = match &received.repository {
            Some(repository) => {
                let as_of = repository_settings::as_of(self.store.as_ref(), repository.id, event.position).await?;
                let rules = match &as_of.settings {
                    Some(in_force) => crate::triggers::settings::rules_for(&self.rules, &in_force.settings),
                    None => self.rules.clone(),
                };
                (rules, as_of.settings, as_of.read)
            }
            None => (self.rules.clone(), None, true),
        };
        let reading = repository_settings::reads_wanted(received, payload, read)
            .into_iter()
            .map(|(subject, repository)| enqueue_settings_read(subject, &repository))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(mut trigger) = classify(received, payload, &event.stream, event.position.0, &rules) else {
            return Ok(reading);
        };
        trigger.repository_settings = in_force;
        // The repository's handle, when its settings name one.
        if stop::asks_to_stop(&trigger, &rules.mention) {
            self.request_stop(trigger).await?;
            return Ok(reading);
        }
        let event_id = derived_id(&["trigger-detected", &trigger.trigger_id.to_string()]);
        let new_event = trigger.to_new_event(event_id, None)?;
        match self.store.append(&streams::trigger(trigger.trigger_id), ExpectedVersion::NoStream, vec![new_event]).await
        {
            Ok(_) | Err(StoreError::WrongExpectedVersion { .. }) => Ok(reading),
            Err(e) => Err(e.into()),
        }
    }

    /// `{handle} stop`: a stop of its own, not a trigger. `NoStream`, as for
    /// a trigger: the first delivery of the comment wins.
    async fn request_stop(&self, request: TriggerDetected) -> Result<(), HandlerError> {
        let stop_id = request.trigger_id;
        let requested = StopRequested { stop_id, request };
        let new_event = requested.to_new_event(derived_id(&["stop-requested", &stop_id.to_string()]), None)?;
        match self.store.append(&streams::stop(stop_id), ExpectedVersion::NoStream, vec![new_event]).await {
            Ok(_) | Err(StoreError::WrongExpectedVersion { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A stop's stream moved: its one step, while it is not answered.
    async fn stop_moved(&self, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        let history = self.store.read_stream(&event.stream, 0, usize::MAX).await?;
        let state = StopState::fold(&history).map_err(|e| HandlerError::Decode {
            event_type: e.event_type,
            position: e.position,
            source: e.source,
        })?;
        Ok(match &state.requested {
            Some(requested) if state.is_open() => vec![enqueue(requested.stop_id, Step::StopConversation, 0)],
            _ => Vec::new(),
        })
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
        let subject =
            pull_request_subject(pr.repository_id, pr.number, payload.pull_request.closed_at.as_deref().unwrap_or(""));
        Ok(vec![enqueue_enrichment(subject, &pr)?])
    }

    /// A trigger's stream moved: fold it and enqueue the step that comes
    /// next. The whole stream as it stands, not only up to this event: a step
    /// an event further on already did is never enqueued (a replay, or a
    /// catch-up after a crash, enqueues only what is still to do); enqueuing
    /// is idempotent by command id, so reading further than `event` is safe.
    async fn advance(&self, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        let state = self.fold_trigger(&event.stream).await?;
        let Some(detected) = &state.detected else { return Ok(Vec::new()) };
        let mut statements = Vec::new();
        if let Ok(Some(TriggerEvent::ConversationStarted(started))) = TriggerEvent::decode(event) {
            statements.push(map_conversation(&started.conversation_id, started.trigger_id));
            statements.push(record_agent_repository(detected.repository.id));
        }
        statements.extend(self.next_in_line(&state).await?);
        Ok(statements)
    }

    async fn fold_trigger(&self, stream: &str) -> Result<TriggerState, HandlerError> {
        let history = self.store.read_stream(stream, 0, usize::MAX).await?;
        TriggerState::fold(&history).map_err(|e| HandlerError::Decode {
            event_type: e.event_type,
            position: e.position,
            source: e.source,
        })
    }

    async fn fold_thread(&self, stream: &str) -> Result<ThreadState, HandlerError> {
        let history = self.store.read_stream(stream, 0, usize::MAX).await?;
        ThreadState::fold(&history).map_err(|e| HandlerError::Decode {
            event_type: e.event_type,
            position: e.position,
            source: e.source,
        })
    }

    /// The trigger's next step, once the line of its issue or pull request
    /// has had its say ([`thread::in_line`]): a start waits its turn, and a
    /// trigger that is done leaves the line. What the line is told is
    /// appended to its stream (ids derived from the trigger, so a replay
    /// appends nothing); the process manager sees that event in turn and
    /// moves whoever it lets go ([`ProcessManager::thread_moved`]).
    async fn next_in_line(&self, state: &TriggerState) -> Result<Option<Statement>, HandlerError> {
        let Some(detected) = &state.detected else { return Ok(None) };
        let enqueue_step = |step: Option<Step>| step.map(|step| enqueue(detected.trigger_id, step, state.retries));
        let next = next_step(state);
        if detected.kind == TriggerKind::FailedWorkflow {
            return Ok(enqueue_step(self.admit_suggestion(state, next).await?));
        }
        if crate::triggers::is_over(state) {
            // Done or given up: it leaves the running lines it is in.
            self.running_turns(state).await?;
        }
        let stream = streams::thread(detected.repository.id, detected.number);
        let line = self.fold_thread(&stream).await?;
        match thread::in_line(state, &line, self.per_thread) {
            InLine::Step(step) => Ok(enqueue_step(self.admit(state, step).await?)),
            InLine::Join(queued) => {
                let joined = queued.to_new_event(queued.event_id(), None)?;
                self.store.append(&stream, ExpectedVersion::Any, vec![joined]).await?;
                // In line now: its first step need not wait for the join to come round.
                let line = self.fold_thread(&stream).await?;
                match thread::in_line(state, &line, self.per_thread) {
                    InLine::Step(step) => Ok(enqueue_step(self.admit(state, step).await?)),
                    // Not taken in (cannot be: the join is in the stream): `thread_moved` decides.
                    InLine::Join(_) | InLine::Leave(_) => Ok(None),
                }
            }
            InLine::Leave(released) => {
                let left = released.to_new_event(released.event_id(), None)?;
                self.store.append(&stream, ExpectedVersion::Any, vec![left]).await?;
                Ok(None)
            }
        }
    }

    /// A start, once the daily limits have had their say: admitted on the
    /// day's stream (with its expected version, so two instances cannot both
    /// take the last place), or the trigger is rejected with reason `limit`
    /// and no step (its reply follows from the rejection).
    async fn admit(&self, state: &TriggerState, step: Option<Step>) -> Result<Option<Step>, HandlerError> {
        let (Some(Step::StartConversation), Some(detected)) = (step, &state.detected) else { return Ok(step) };
        if state.requested.is_some() {
            return Ok(step);
        }
        if !self.running_turns(state).await? {
            return Ok(None);
        }
        if !self.daily_limits.any() {
            return Ok(step);
        }
        let now = self.limits_clock.now_micros();
        // Admitted just before midnight but not yet started (a crash): still admitted.
        let yesterday = self.fold_admissions(&streams::admissions(&limits::previous_utc_day(now))).await?;
        if yesterday.admitted.contains(&detected.trigger_id) {
            return Ok(step);
        }
        let stream = streams::admissions(&limits::utc_day(now));
        loop {
            let today = self.fold_admissions(&stream).await?;
            match limits::decide(self.daily_limits, &today, detected) {
                Admission::Already => return Ok(step),
                Admission::Admit(admitted) => {
                    let expected = today.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let new_event = admitted.to_new_event(admitted.event_id(&stream), None)?;
                    match self.store.append(&stream, expected, vec![new_event]).await {
                        Ok(_) => return Ok(step),
                        // Another instance admitted meanwhile: count again.
                        Err(StoreError::WrongExpectedVersion { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Admission::Over(limit) => return self.reject_over_limit(state, detected, limit, now).await,
            }
        }
    }

    /// A proactive suggestion, once `HOOKWISE_MAX_PROACTIVE_PER_PR` has had
    /// its say: admitted on the pull request's stream `proactive-…` (expected
    /// version, as the daily limits), or rejected silently (nobody asked).
    async fn admit_suggestion(&self, state: &TriggerState, step: Option<Step>) -> Result<Option<Step>, HandlerError> {
        let (Some(Step::PostSuggestion), Some(detected)) = (step, &state.detected) else { return Ok(step) };
        if self.max_proactive_per_pr == 0 {
            return Ok(step);
        }
        let stream = streams::proactive(detected.repository.id, detected.number);
        loop {
            let admitted = self.fold_admissions(&stream).await?;
            match limits::decide_proactive(self.max_proactive_per_pr, &admitted, detected) {
                Admission::Already => return Ok(step),
                Admission::Admit(admission) => {
                    let expected = admitted.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let new_event = admission.to_new_event(admission.event_id(&stream), None)?;
                    match self.store.append(&stream, expected, vec![new_event]).await {
                        Ok(_) => return Ok(step),
                        Err(StoreError::WrongExpectedVersion { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Admission::Over(limit) => {
                    let now = self.limits_clock.now_micros();
                    return self.reject_over_limit(state, detected, limit, now).await;
                }
            }
        }
    }

    /// `TriggerRejected { reason: "limit" }`, appended on the state it was
    /// decided on; no step (a request's reply follows from the rejection).
    async fn reject_over_limit(
        &self,
        state: &TriggerState,
        detected: &crate::events::TriggerDetected,
        limit: limits::Limit,
        now: i64,
    ) -> Result<Option<Step>, HandlerError> {
        let rejected = TriggerRejected {
            trigger_id: detected.trigger_id,
            reason: crate::triggers::LIMIT.to_owned(),
            message: limits::over_limit_message(limit, &detected.requester.login, now),
        };
        let event_id = derived_id(&["limit-rejected", &detected.trigger_id.to_string()]);
        let new_event = rejected.to_new_event(event_id, None)?;
        let trigger_stream = streams::trigger(detected.trigger_id);
        let expected = state.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        // The trigger moved meanwhile: its next event decides again.
        match self.store.append(&trigger_stream, expected, vec![new_event]).await {
            Ok(_) | Err(StoreError::WrongExpectedVersion { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the trigger through its running lines ([`RunningLimits::lines`]):
    /// joins each it is not in, leaves each when it is done. `false` when its
    /// start must wait for a place; every release makes the process manager
    /// look again at the line ([`ProcessManager::thread_moved`]).
    async fn running_turns(&self, state: &TriggerState) -> Result<bool, HandlerError> {
        let Some(detected) = &state.detected else { return Ok(true) };
        for (stream, max) in self.running_limits.lines(detected.repository.id) {
            loop {
                let line = self.fold_thread(&stream).await?;
                let new_event = match limits::running_turn(state, &line, max) {
                    RunningTurn::Go => break,
                    RunningTurn::Wait => return Ok(false),
                    RunningTurn::Join(queued) => {
                        let id = limits::running_event_id(&stream, "running-queued", queued.trigger_id, queued.retry);
                        queued.to_new_event(id, None)?
                    }
                    RunningTurn::Leave(released) => {
                        let id =
                            limits::running_event_id(&stream, "running-released", released.trigger_id, released.retry);
                        released.to_new_event(id, None)?
                    }
                };
                // Its place is where the log put it: fold again and decide.
                self.store.append(&stream, ExpectedVersion::Any, vec![new_event]).await?;
            }
        }
        Ok(true)
    }

    async fn fold_admissions(&self, stream: &str) -> Result<DailyAdmissions, HandlerError> {
        let history = self.store.read_stream(stream, 0, usize::MAX).await?;
        DailyAdmissions::fold(&history).map_err(|(event, source)| HandlerError::decode(event, source))
    }

    /// A thread's line changed: every trigger in it (and the one that just
    /// left) is looked at again, so the new head starts.
    async fn thread_moved(&self, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        let Some(changed) = ThreadEvent::decode(event).map_err(|e| HandlerError::decode(event, e))? else {
            return Ok(Vec::new());
        };
        let line = self.fold_thread(&event.stream).await?;
        let mut triggers: Vec<Uuid> = line.line().collect();
        if !triggers.contains(&changed.trigger_id()) {
            triggers.push(changed.trigger_id());
        }
        let mut statements = Vec::new();
        for trigger_id in triggers {
            let state = self.fold_trigger(&streams::trigger(trigger_id)).await?;
            statements.extend(self.next_in_line(&state).await?);
        }
        Ok(statements)
    }
}

fn decode<T: DomainEvent>(event: &RecordedEvent) -> Result<T, HandlerError> {
    T::decode(event).map_err(|e| HandlerError::decode(event, e))
}

#[async_trait]
impl EventHandler for ProcessManager {
    fn name(&self) -> &'static str {
        NAME
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    /// A batch that writes anything (commands, mostly) tells the executors
    /// of other instances too, when it commits.
    fn compact(&self, statements: Vec<Statement>) -> Vec<Statement> {
        let mut statements = coalesce_inserts(statements);
        let writes = !statements.is_empty();
        if writes {
            statements.extend(outbox::wake_executors(self.dialect));
        }
        self.batch_writes.store(writes, Ordering::Relaxed);
        statements
    }

    fn committed(&self) {
        if self.batch_writes.swap(false, Ordering::Relaxed) {
            self.wake.wake();
        }
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        Ok(match event.event_type.as_str() {
            WebhookReceived::TYPE => {
                let received: WebhookReceived = decode(event)?;
                let mut statements = self.detect(event, &received).await?;
                if received.event == "pull_request" && received.action.as_deref() == Some("closed") {
                    statements.extend(Self::closed_pull_request(event, &received)?);
                }
                statements
            }
            EnrichmentRetried::TYPE => {
                let retried: EnrichmentRetried = decode(event)?;
                vec![enqueue_enrichment_retry(retried.subject_id, retried.retry)]
            }
            // Logs from before enrichments had events of their own retried them
            // with a `TriggerRetried` on the PR's stream.
            TriggerRetried::TYPE if event.stream.starts_with(streams::PULL_REQUEST_PREFIX) => {
                match enrichment::EnrichmentEvent::decode(event).map_err(|e| HandlerError::decode(event, e))? {
                    Some(enrichment::EnrichmentEvent::Retried(retried)) => {
                        vec![enqueue_enrichment_retry(retried.subject_id, retried.retry)]
                    }
                    _ => Vec::new(),
                }
            }
            // Every event of a trigger's stream moves it (the fold passes over
            // any type it does not know).
            _ if event.stream.starts_with(streams::TRIGGER_PREFIX) => self.advance(event).await?,
            _ if event.stream.starts_with(streams::THREAD_PREFIX) => self.thread_moved(event).await?,
            _ if event.stream.starts_with(streams::STOP_PREFIX) => self.stop_moved(event).await?,
            // A running line is a line like a thread's: the next may start.
            _ if event.stream.starts_with(streams::RUNNING_PREFIX) => self.thread_moved(event).await?,
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
