//! The rules of the lifecycle: the steps, which one comes next, and the status.

use super::{TriggerEvent, TriggerState};
use crate::events::TriggerKind;

/// Why a trigger was rejected when the agent runtime refused to start: the
/// only rejection that is answered with a reply (the others happen before
/// anything was said where the request was made, or are the requester's
/// missing permission).
pub const CONVERSATION_REFUSED: &str = "conversation_refused";

/// Why a trigger was rejected when an operator's daily limit was reached
/// ([`super::limits`]): answered with a reply naming the limit, like a refusal.
pub const LIMIT: &str = "limit";

/// The steps of a trigger, in order. Each is one outbox command performed by
/// the executor (`src/process/executor/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Installation present and not suspended; the requester may write.
    CheckPermission,
    /// 👀 where the request was made.
    AddReaction,
    StartConversation,
    /// "I'm on it!" with the conversation link.
    PostAcknowledgement,
    /// Ask the runtime how the run stands until it ends (a backstop for
    /// runtimes that push, the only way for those that cannot).
    FollowConversation,
    /// The agent's result, or a short reply naming why there is none.
    PostSummary,
    /// Failed runs: one suggestion comment once every run for the sha is done.
    PostSuggestion,
    /// Say where the request was made why hookwise gave up (after a step's
    /// last attempt failed): the status comment edited, or a reply.
    ReportAbandonment,
    /// "Queued behind …": the request waits for the one running on its issue
    /// or pull request (`HOOKWISE_PER_THREAD=queue`, see [`super::thread`]).
    PostQueuedNotice,
    /// Not a trigger's step: a stop's one step (`{handle} stop`, stream
    /// `stop-{id}`, its outbox subject the stop id; see [`super::stop`]).
    StopConversation,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::CheckPermission,
        Step::AddReaction,
        Step::StartConversation,
        Step::PostAcknowledgement,
        Step::FollowConversation,
        Step::PostSummary,
        Step::PostSuggestion,
        Step::ReportAbandonment,
        Step::PostQueuedNotice,
        Step::StopConversation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::CheckPermission => "check_permission",
            Step::AddReaction => "add_reaction",
            Step::StartConversation => "start_conversation",
            Step::PostAcknowledgement => "post_acknowledgement",
            Step::FollowConversation => "follow_conversation",
            Step::PostSummary => "post_summary",
            Step::PostSuggestion => "post_suggestion",
            Step::ReportAbandonment => "report_abandonment",
            Step::PostQueuedNotice => "post_queued_notice",
            Step::StopConversation => "stop_conversation",
        }
    }

    pub fn parse(step: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.as_str() == step)
    }
}

/// What an agent state (as a runtime or hookwise reports it in
/// `ConversationStatusChanged`) means for the trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOutcome {
    /// Still going (or waiting between turns).
    Running,
    /// Ended with a result to post.
    Finished,
    /// Ended without one: the reply names the state.
    Failed,
    /// A state hookwise does not know; it changes nothing.
    Unknown,
}

impl AgentOutcome {
    pub fn of(agent_state: &str) -> AgentOutcome {
        match agent_state.to_ascii_lowercase().as_str() {
            // V0 and V1 states that keep a run going.
            "loading"
            | "init"
            | "running"
            | "paused"
            | "started"
            | "starting"
            | "idle"
            | "waiting_for_confirmation"
            | "awaiting_user_confirmation"
            | "user_confirmed" => AgentOutcome::Running,
            "finished" | "awaiting_user_input" => AgentOutcome::Finished,
            // V0 (`error`, `rate_limited`, `stopped`, `rejected`), V1 (`error`,
            // `stuck`) and hookwise's own (`timed_out`, `start_failed`,
            // `sandbox_error`, `sandbox_missing`, `conversation_missing`).
            "error"
            | "rate_limited"
            | "stopped"
            | "rejected"
            | "user_rejected"
            | "stuck"
            | "timed_out"
            | "start_failed"
            | "sandbox_error"
            | "sandbox_missing"
            | "conversation_missing" => AgentOutcome::Failed,
            _ => AgentOutcome::Unknown,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, AgentOutcome::Finished | AgentOutcome::Failed)
    }
}

/// Which step comes next, given everything the trigger's stream says; `None`
/// when there is nothing to do (ended, rejected, abandoned, or waiting for
/// someone else). The process manager enqueues it with an id derived from
/// (trigger, step, retries), so asking again after each event is harmless.
pub fn next_step(state: &TriggerState) -> Option<Step> {
    let detected = state.detected.as_ref()?;
    if state.summary.is_some() {
        return None;
    }
    if let Some((abandoned, _)) = &state.abandoned {
        return may_report_abandonment(state, detected.kind, &abandoned.step).then_some(Step::ReportAbandonment);
    }
    if detected.kind == TriggerKind::FailedWorkflow {
        return state.rejected.is_none().then_some(Step::PostSuggestion);
    }
    if let Some(rejected) = &state.rejected {
        return [CONVERSATION_REFUSED, LIMIT].contains(&rejected.reason.as_str()).then_some(Step::PostSummary);
    }
    match &state.permission {
        None => return Some(Step::CheckPermission),
        Some(permission) if !permission.granted => return None,
        Some(_) => {}
    }
    if state.reaction.is_none() {
        return Some(Step::AddReaction);
    }
    if state.started.is_none() {
        return Some(Step::StartConversation);
    }
    if state.acknowledged.is_none() {
        return Some(Step::PostAcknowledgement);
    }
    if state.ended.is_none() && state.stopped.is_none() {
        return Some(Step::FollowConversation);
    }
    Some(Step::PostSummary)
}

/// Whether a trigger needs nothing more of the agent or its turn: done, or
/// given up (saying so where it was asked is all that may be left). A line
/// it waits or runs in lets the next one go then.
pub fn is_over(state: &TriggerState) -> bool {
    matches!(next_step(state), None | Some(Step::ReportAbandonment))
}

/// Whether an abandonment is said where the request was made: once, only to
/// someone allowed to ask (never before the permission is granted), never for
/// a proactive suggestion nobody asked for, and not when saying it is what
/// failed.
fn may_report_abandonment(state: &TriggerState, kind: TriggerKind, step: &str) -> bool {
    state.abandonment_reported.is_none()
        && kind != TriggerKind::FailedWorkflow
        && state.permission.as_ref().is_some_and(|p| p.granted)
        && step != Step::ReportAbandonment.as_str()
}

/// Where a trigger stands, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerStatus {
    Detected,
    Rejected,
    Starting,
    Running,
    Finished,
    Failed,
    Abandoned,
    /// Stopped on someone's request (`{handle} stop`).
    Stopped,
}

impl TriggerStatus {
    pub const ALL: [TriggerStatus; 8] = [
        TriggerStatus::Detected,
        TriggerStatus::Rejected,
        TriggerStatus::Starting,
        TriggerStatus::Running,
        TriggerStatus::Finished,
        TriggerStatus::Failed,
        TriggerStatus::Abandoned,
        TriggerStatus::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerStatus::Detected => "detected",
            TriggerStatus::Rejected => "rejected",
            TriggerStatus::Starting => "starting",
            TriggerStatus::Running => "running",
            TriggerStatus::Finished => "finished",
            TriggerStatus::Failed => "failed",
            TriggerStatus::Abandoned => "abandoned",
            TriggerStatus::Stopped => "stopped",
        }
    }

    pub fn parse(status: &str) -> Option<TriggerStatus> {
        TriggerStatus::ALL.into_iter().find(|s| s.as_str() == status)
    }
}

/// The status of a trigger: the [`StatusChange`]s of its events, in order.
pub fn status(state: &TriggerState) -> TriggerStatus {
    state.status
}

/// What one event does to the status. The one definition of the status:
/// [`TriggerState::fold`] applies it in memory, and the `conversations` read
/// model applies the same change in SQL ([`StatusChange::sql`]), so the two
/// cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Keep,
    To(TriggerStatus),
    /// To `to`, only from one of `from`.
    ToFrom {
        to: TriggerStatus,
        from: &'static [TriggerStatus],
    },
    /// To `to`, unless the status is one of `unless`.
    ToUnless {
        to: TriggerStatus,
        unless: &'static [TriggerStatus],
    },
}

use TriggerStatus as S;

impl StatusChange {
    pub fn of(event: &TriggerEvent) -> StatusChange {
        match event {
            TriggerEvent::TriggerDetected(_) => StatusChange::To(S::Detected),
            TriggerEvent::PermissionChecked(checked) if !checked.granted => StatusChange::To(S::Rejected),
            TriggerEvent::TriggerRejected(_) => StatusChange::To(S::Rejected),
            TriggerEvent::ConversationRequested(_) => StatusChange::ToFrom { to: S::Starting, from: &[S::Detected] },
            TriggerEvent::ConversationStarted(_) => {
                StatusChange::ToFrom { to: S::Running, from: &[S::Detected, S::Starting] }
            }
            TriggerEvent::ConversationStatusChanged(changed) => match AgentOutcome::of(&changed.agent_state) {
                AgentOutcome::Running => StatusChange::ToFrom { to: S::Running, from: &[S::Detected, S::Starting] },
                AgentOutcome::Finished => {
                    StatusChange::ToUnless { to: S::Finished, unless: &[S::Rejected, S::Abandoned, S::Stopped] }
                }
                AgentOutcome::Failed => {
                    StatusChange::ToUnless { to: S::Failed, unless: &[S::Rejected, S::Abandoned, S::Stopped] }
                }
                AgentOutcome::Unknown => StatusChange::Keep,
            },
            TriggerEvent::SummaryPosted(posted) => match AgentOutcome::of(&posted.outcome) {
                AgentOutcome::Failed => StatusChange::ToUnless { to: S::Failed, unless: &[S::Rejected, S::Stopped] },
                // A summary, a suggestion, or the reply to a refusal (whose rejection stays).
                _ => StatusChange::ToFrom { to: S::Finished, from: &[S::Detected, S::Starting, S::Running] },
            },
            TriggerEvent::TriggerAbandoned(_) => StatusChange::To(S::Abandoned),
            // A run that ended first keeps its end.
            TriggerEvent::ConversationStopped(_) => {
                StatusChange::ToFrom { to: S::Stopped, from: &[S::Starting, S::Running] }
            }
            TriggerEvent::TriggerRetried(retried) => {
                StatusChange::To(retried.resumes.as_deref().and_then(TriggerStatus::parse).unwrap_or(S::Detected))
            }
            TriggerEvent::PermissionChecked(_)
            | TriggerEvent::ReactionAdded(_)
            | TriggerEvent::AcknowledgementPosted(_)
            | TriggerEvent::StepFailed(_)
            | TriggerEvent::AbandonmentReported(_)
            | TriggerEvent::QueuedNoticePosted(_) => StatusChange::Keep,
        }
    }

    pub fn apply(self, status: TriggerStatus) -> TriggerStatus {
        match self {
            StatusChange::Keep => status,
            StatusChange::To(to) => to,
            StatusChange::ToFrom { to, from } => {
                if from.contains(&status) {
                    to
                } else {
                    status
                }
            }
            StatusChange::ToUnless { to, unless } => {
                if unless.contains(&status) {
                    status
                } else {
                    to
                }
            }
        }
    }

    /// The same change as an SQL expression over the column `status`
    /// (`None` for [`StatusChange::Keep`]). Only known names are written into
    /// it, never input.
    pub fn sql(self) -> Option<String> {
        let list = |statuses: &[TriggerStatus]| {
            statuses.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
        };
        match self {
            StatusChange::Keep => None,
            StatusChange::To(to) => Some(format!("'{}'", to.as_str())),
            StatusChange::ToFrom { to, from } => {
                Some(format!("CASE WHEN status IN ({}) THEN '{}' ELSE status END", list(from), to.as_str()))
            }
            StatusChange::ToUnless { to, unless } => {
                Some(format!("CASE WHEN status IN ({}) THEN status ELSE '{}' END", list(unless), to.as_str()))
            }
        }
    }
}
