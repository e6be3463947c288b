//! What a trigger's events add up to.

use uuid::Uuid;

use super::lifecycle::{AgentOutcome, StatusChange, Step, TriggerStatus};
use super::TriggerEvent;
use crate::events::{
    derived_id, AbandonmentReported, AcknowledgementPosted, ConversationRequested, ConversationStarted,
    ConversationStatusChanged, ConversationStopped, DecodeError, PermissionChecked, QueuedNoticePosted, ReactionAdded,
    SummaryPosted, TriggerAbandoned, TriggerDetected, TriggerRejected, TriggerRetried,
};
use crate::store::{Position, RecordedEvent};

/// An event of a trigger's stream that does not decode as its type says.
#[derive(Debug, thiserror::Error)]
#[error("{event_type} at {position}: {source}")]
pub struct FoldError {
    pub event_type: String,
    pub position: Position,
    #[source]
    pub source: DecodeError,
}

/// A trigger as its stream tells it. Built only by folding events, so every
/// question about a trigger ("is the 👀 there?", "which retry is this?") is
/// answered the same way by the process manager, the executor and the admin
/// commands.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerState {
    pub detected: Option<TriggerDetected>,
    pub permission: Option<PermissionChecked>,
    pub rejected: Option<TriggerRejected>,
    pub reaction: Option<ReactionAdded>,
    pub requested: Option<ConversationRequested>,
    pub started: Option<ConversationStarted>,
    /// When the conversation started (the log's time), for `AGENT_RUN_TIMEOUT`.
    pub started_at_micros: Option<i64>,
    pub acknowledged: Option<AcknowledgementPosted>,
    /// The first state that ended the run.
    pub ended: Option<ConversationStatusChanged>,
    pub summary: Option<SummaryPosted>,
    /// The abandonment not yet retried, with its event id.
    pub abandoned: Option<(TriggerAbandoned, Uuid)>,
    /// What was said of that abandonment where the request was made.
    pub abandonment_reported: Option<AbandonmentReported>,
    /// The comment hookwise keeps up to date where the request was made: the
    /// first it posted for this trigger (the acknowledgement, or before it the
    /// "Queued behind …" notice or the report of an abandonment). Kept across
    /// retries.
    pub status_comment: Option<u64>,
    /// Admin retries so far.
    pub retries: u32,
    /// The "Queued behind …" reply, when the request had to wait its turn.
    pub queued_notice: Option<QueuedNoticePosted>,
    /// The stop someone asked for (`{handle} stop`): the run counts as ended.
    pub stopped: Option<ConversationStopped>,
    /// Read it with [`super::status`].
    pub(super) status: TriggerStatus,
    /// The status before the open abandonment, which a retry resumes.
    resumes: TriggerStatus,
    /// The version of the stream's last event folded (`None`: no event).
    pub version: Option<u64>,
}

impl Default for TriggerState {
    fn default() -> Self {
        TriggerState {
            detected: None,
            permission: None,
            rejected: None,
            reaction: None,
            requested: None,
            started: None,
            started_at_micros: None,
            acknowledged: None,
            ended: None,
            summary: None,
            abandoned: None,
            abandonment_reported: None,
            status_comment: None,
            retries: 0,
            queued_notice: None,
            stopped: None,
            status: TriggerStatus::Detected,
            resumes: TriggerStatus::Detected,
            version: None,
        }
    }
}

impl TriggerState {
    /// Folds a trigger stream's recorded events (other types are passed over).
    pub fn fold(events: &[RecordedEvent]) -> Result<TriggerState, FoldError> {
        let mut state = TriggerState::default();
        for recorded in events {
            let decoded = TriggerEvent::decode(recorded).map_err(|source| FoldError {
                event_type: recorded.event_type.clone(),
                position: recorded.position,
                source,
            })?;
            if let Some(event) = decoded {
                state.apply(&event, recorded.event_id, recorded.recorded_at_micros);
            }
            state.version = Some(recorded.version);
        }
        Ok(state)
    }

    /// Folds typed events (times and ids left at zero): for tests and tools.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a TriggerEvent>) -> TriggerState {
        let mut state = TriggerState::default();
        for (version, event) in events.into_iter().enumerate() {
            state.apply(event, Uuid::nil(), 0);
            state.version = Some(version as u64);
        }
        state
    }

    /// One event more. `event_id` and `recorded_at_micros` are the log's.
    pub fn apply(&mut self, event: &TriggerEvent, event_id: Uuid, recorded_at_micros: i64) {
        let before = self.status;
        self.status = StatusChange::of(event).apply(self.status);
        match event {
            TriggerEvent::TriggerDetected(e) => {
                self.detected.get_or_insert_with(|| e.as_ref().clone());
            }
            TriggerEvent::PermissionChecked(e) => self.permission = Some(e.clone()),
            TriggerEvent::TriggerRejected(e) => self.rejected = Some(e.clone()),
            TriggerEvent::ReactionAdded(e) => self.reaction = Some(e.clone()),
            TriggerEvent::ConversationRequested(e) => self.requested = Some(e.clone()),
            TriggerEvent::ConversationStarted(e) => {
                if self.started.is_none() {
                    self.started = Some(e.clone());
                    self.started_at_micros = Some(recorded_at_micros);
                }
            }
            TriggerEvent::AcknowledgementPosted(e) => {
                self.status_comment.get_or_insert(e.comment_id);
                self.acknowledged = Some(e.clone());
            }
            TriggerEvent::ConversationStatusChanged(e) => {
                if self.ended.is_none() && AgentOutcome::of(&e.agent_state).is_terminal() {
                    self.ended = Some(e.clone());
                }
            }
            TriggerEvent::SummaryPosted(e) => self.summary = Some(e.clone()),
            // A failed attempt changes nothing but the outbox's due time.
            TriggerEvent::StepFailed(_) => {}
            TriggerEvent::TriggerAbandoned(e) => {
                self.abandoned = Some((e.clone(), event_id));
                self.resumes = before;
            }
            TriggerEvent::AbandonmentReported(e) => {
                self.status_comment.get_or_insert(e.comment_id);
                self.abandonment_reported = Some(e.clone());
            }
            TriggerEvent::TriggerRetried(e) => {
                self.abandoned = None;
                self.abandonment_reported = None;
                self.retries = self.retries.max(e.retry);
            }
            TriggerEvent::QueuedNoticePosted(e) => {
                self.status_comment.get_or_insert(e.comment_id);
                self.queued_notice.get_or_insert_with(|| e.clone());
            }
            TriggerEvent::ConversationStopped(e) => {
                self.stopped.get_or_insert_with(|| e.clone());
            }
        }
    }

    /// The retry an admin may ask for: the open abandonment's step again, as
    /// retry number `retries + 1`. `None` when nothing is abandoned (never,
    /// or already retried).
    pub fn retry(&self, requested_by: &str) -> Option<(TriggerRetried, Uuid)> {
        let (abandoned, abandoned_id) = self.abandoned.as_ref()?;
        let retried = TriggerRetried {
            trigger_id: abandoned.trigger_id,
            step: abandoned.step.clone(),
            retry: self.retries + 1,
            requested_by: requested_by.to_owned(),
            resumes: Some(self.resumes.as_str().to_owned()),
        };
        // One retry per abandonment: asking twice yields the same event id.
        Some((retried, derived_id(&["trigger-retried", &abandoned_id.to_string()])))
    }

    /// Whether `step` has left its mark in the stream already (a retried or
    /// redelivered command then appends nothing).
    pub fn has_done(&self, step: Step) -> bool {
        match step {
            Step::CheckPermission => self.permission.is_some() || self.rejected.is_some(),
            Step::AddReaction => self.reaction.is_some(),
            Step::StartConversation => self.started.is_some() || self.rejected.is_some(),
            Step::PostAcknowledgement => self.acknowledged.is_some(),
            Step::FollowConversation => self.ended.is_some() || self.stopped.is_some(),
            Step::PostSummary | Step::PostSuggestion => self.summary.is_some(),
            // Nothing to report once retried (or already said).
            Step::ReportAbandonment => self.abandonment_reported.is_some() || self.abandoned.is_none(),
            // Once it runs there is nothing to wait for.
            Step::PostQueuedNotice => self.queued_notice.is_some() || self.requested.is_some(),
            // A stop's step, never a trigger's.
            Step::StopConversation => false,
        }
    }
}
