//! One run at a time per issue or pull request (`HOOKWISE_PER_THREAD`): the
//! line of requests on one thread (stream `thread-{repository_id}-{number}`)
//! as its events tell it ([`ThreadState::fold`]), and what the line means for
//! one trigger ([`in_line`]).
//!
//! A trigger joins the line of its issue or pull request with its first step
//! (so the line keeps the order the requests were made in, whichever gets
//! its permission checked first); its other steps go on as before, but its
//! start waits until it is the first in line (with one "Queued behind …"
//! reply). A trigger leaves when it has nothing more to do: its summary
//! posted, rejected (permission denied included), or abandoned (an abandoned
//! trigger releases the line, so nothing waits for an admin; its retry joins
//! again, at the end). Failed-run suggestions start nothing and never join.
//! With `parallel` the line is kept all the same (it says who is active on
//! the thread, which a stop needs), but no start waits for it.

use std::collections::HashSet;

use uuid::Uuid;

use super::state::FoldError;
use super::{is_over, next_step, Step, TriggerState};
use crate::events::{DecodeError, DomainEvent, ThreadRequestQueued, ThreadRequestReleased, TriggerKind};
use crate::store::RecordedEvent;

/// `HOOKWISE_PER_THREAD`: whether requests on the same issue or pull request
/// wait for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PerThread {
    /// One conversation at a time; later requests wait their turn.
    #[default]
    Queue,
    /// Every request starts at once.
    Parallel,
}

/// An event of a `thread-…` stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ThreadEvent {
    Queued(ThreadRequestQueued),
    Released(ThreadRequestReleased),
}

impl ThreadEvent {
    /// The thread event a recorded event is; `Ok(None)` for any other type.
    pub fn decode(event: &RecordedEvent) -> Result<Option<ThreadEvent>, DecodeError> {
        Ok(match event.event_type.as_str() {
            ThreadRequestQueued::TYPE => Some(ThreadEvent::Queued(ThreadRequestQueued::decode(event)?)),
            ThreadRequestReleased::TYPE => Some(ThreadEvent::Released(ThreadRequestReleased::decode(event)?)),
            _ => None,
        })
    }

    pub fn trigger_id(&self) -> Uuid {
        match self {
            ThreadEvent::Queued(e) => e.trigger_id,
            ThreadEvent::Released(e) => e.trigger_id,
        }
    }
}

/// The line of one issue or pull request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThreadState {
    /// The triggers in line, in the order they joined, each with the retry it
    /// joined with: the first may run, the others wait.
    line: Vec<(Uuid, u32)>,
    /// Every (trigger, retry) that left: a trigger joins once per retry.
    left: HashSet<(Uuid, u32)>,
}

impl ThreadState {
    /// Folds a thread stream's recorded events (other types are passed over).
    pub fn fold(events: &[RecordedEvent]) -> Result<ThreadState, FoldError> {
        let mut state = ThreadState::default();
        for recorded in events {
            let decoded = ThreadEvent::decode(recorded).map_err(|source| FoldError {
                event_type: recorded.event_type.clone(),
                position: recorded.position,
                source,
            })?;
            if let Some(event) = decoded {
                state.apply(&event);
            }
        }
        Ok(state)
    }

    /// Folds typed events: for tests and tools.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ThreadEvent>) -> ThreadState {
        let mut state = ThreadState::default();
        for event in events {
            state.apply(event);
        }
        state
    }

    pub fn apply(&mut self, event: &ThreadEvent) {
        match event {
            ThreadEvent::Queued(queued) => {
                if !self.line.iter().any(|(trigger, _)| *trigger == queued.trigger_id) {
                    self.line.push((queued.trigger_id, queued.retry));
                }
            }
            ThreadEvent::Released(released) => {
                self.line.retain(|(trigger, retry)| !(*trigger == released.trigger_id && *retry == released.retry));
                self.left.insert((released.trigger_id, released.retry));
            }
        }
    }

    /// The trigger that may run (or runs).
    pub fn head(&self) -> Option<Uuid> {
        self.line.first().map(|(trigger, _)| *trigger)
    }

    /// Every trigger in line, the head first.
    pub fn line(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.line.iter().map(|(trigger, _)| *trigger)
    }

    /// How many are ahead of `trigger_id` (0: it is the head); `None` when it is not in line.
    pub fn position(&self, trigger_id: Uuid) -> Option<usize> {
        self.line.iter().position(|(trigger, _)| *trigger == trigger_id)
    }

    /// The head, when `trigger_id` waits behind it.
    pub fn waits_behind(&self, trigger_id: Uuid) -> Option<Uuid> {
        match self.position(trigger_id) {
            Some(ahead) if ahead > 0 => self.head(),
            _ => None,
        }
    }

    /// Whether `trigger_id` left the line at admin retry `retry`.
    pub fn has_left(&self, trigger_id: Uuid, retry: u32) -> bool {
        self.left.contains(&(trigger_id, retry))
    }

    pub(super) fn retry_of(&self, trigger_id: Uuid) -> Option<u32> {
        self.line.iter().find(|(trigger, _)| *trigger == trigger_id).map(|(_, retry)| *retry)
    }
}

/// What the line makes of a trigger's next step.
#[derive(Debug, Clone, PartialEq)]
pub enum InLine {
    /// Enqueue this step (if any): the line has nothing against it.
    Step(Option<Step>),
    /// Not in line yet: join it first (append this to the thread, then ask again).
    Join(ThreadRequestQueued),
    /// Done: leave the line (append this), so the next one may start.
    Leave(ThreadRequestReleased),
}

/// What comes next for the trigger, once the line of its issue or pull
/// request has its say. Pure: the process manager appends what it says to
/// the thread, or enqueues its step.
pub fn in_line(state: &TriggerState, thread: &ThreadState, mode: PerThread) -> InLine {
    let next = next_step(state);
    let Some(detected) = &state.detected else { return InLine::Step(next) };
    if detected.kind == TriggerKind::FailedWorkflow {
        return InLine::Step(next);
    }
    let trigger_id = detected.trigger_id;
    let position = thread.position(trigger_id);
    // Done, or given up (saying so need not hold up the line): it leaves.
    if is_over(state) {
        if position.is_some() {
            let retry = thread.retry_of(trigger_id).unwrap_or(state.retries);
            return InLine::Leave(ThreadRequestReleased { trigger_id, retry, reason: ended(state).to_owned() });
        }
        return InLine::Step(next);
    }
    match (next, position) {
        (None, _) => InLine::Step(None),
        (Some(_), None) if !thread.left.contains(&(trigger_id, state.retries)) => {
            InLine::Join(ThreadRequestQueued { trigger_id, retry: state.retries })
        }
        // `parallel` keeps the line too (who is active on the thread, for a stop) but starts at once.
        (Some(Step::StartConversation), Some(ahead)) if ahead > 0 && mode == PerThread::Queue => {
            InLine::Step(state.queued_notice.is_none().then_some(Step::PostQueuedNotice))
        }
        (Some(step), _) => InLine::Step(Some(step)),
    }
}

/// Why a trigger with nothing more to do is done.
pub(super) fn ended(state: &TriggerState) -> &'static str {
    if state.abandoned.is_some() {
        "abandoned"
    } else if state.stopped.is_some() {
        "stopped"
    } else if state.summary.is_some() {
        "summary_posted"
    } else {
        "rejected"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{
        PermissionChecked, QueuedNoticePosted, ReactionAdded, SummaryPosted, TriggerAbandoned, TriggerRetried,
    };
    use crate::triggers::TriggerEvent;

    fn detected(trigger_id: Uuid, kind: TriggerKind) -> TriggerEvent {
        TriggerEvent::TriggerDetected(Box::new(crate::triggers::fixtures::detected(trigger_id, kind, "@openhands go")))
    }

    /// A trigger whose next step is to start its conversation.
    fn ready(trigger_id: Uuid) -> Vec<TriggerEvent> {
        vec![
            detected(trigger_id, TriggerKind::IssueComment),
            TriggerEvent::PermissionChecked(PermissionChecked {
                trigger_id,
                login: "someone".into(),
                permission: "write".into(),
                granted: true,
                granted_by: None,
            }),
            TriggerEvent::ReactionAdded(ReactionAdded {
                trigger_id,
                target: "issue_comment".into(),
                reaction_id: None,
            }),
        ]
    }

    fn queued(trigger_id: Uuid, retry: u32) -> ThreadEvent {
        ThreadEvent::Queued(ThreadRequestQueued { trigger_id, retry })
    }

    fn released(trigger_id: Uuid, retry: u32) -> ThreadEvent {
        ThreadEvent::Released(ThreadRequestReleased { trigger_id, retry, reason: "summary_posted".into() })
    }

    #[test]
    fn the_line_keeps_the_order_of_joining_and_loses_who_leaves() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let thread = ThreadState::from_events(&[queued(a, 0), queued(b, 0), queued(a, 0), queued(c, 0)]);
        assert_eq!(thread.line().collect::<Vec<_>>(), vec![a, b, c], "joining twice is joining once");
        assert_eq!(thread.head(), Some(a));
        assert_eq!((thread.position(a), thread.position(c)), (Some(0), Some(2)));
        assert_eq!((thread.waits_behind(a), thread.waits_behind(c)), (None, Some(a)));

        let thread = ThreadState::from_events(&[queued(a, 0), queued(b, 0), released(a, 0), released(a, 0)]);
        assert_eq!(thread.line().collect::<Vec<_>>(), vec![b]);
        assert_eq!(thread.head(), Some(b));
        assert_eq!(thread.position(a), None);
        // A release of an earlier retry does not take a later join out.
        let thread = ThreadState::from_events(&[queued(a, 1), released(a, 0)]);
        assert_eq!(thread.head(), Some(a));
    }

    #[test]
    fn a_request_joins_with_its_first_step_and_its_other_steps_go_on() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let just_detected = TriggerState::from_events(&[detected(b, TriggerKind::IssueComment)]);
        assert_eq!(
            in_line(&just_detected, &ThreadState::default(), PerThread::Queue),
            InLine::Join(ThreadRequestQueued { trigger_id: b, retry: 0 })
        );
        // Behind another, its permission is checked all the same.
        let thread = ThreadState::from_events(&[queued(a, 0), queued(b, 0)]);
        assert_eq!(in_line(&just_detected, &thread, PerThread::Queue), InLine::Step(Some(Step::CheckPermission)));
        // A trigger that left is not taken in again at the same retry.
        let left = ThreadState::from_events(&[queued(b, 0), released(b, 0)]);
        assert_eq!(in_line(&just_detected, &left, PerThread::Queue), InLine::Step(Some(Step::CheckPermission)));
    }

    #[test]
    fn the_first_in_line_starts_and_the_others_wait_with_one_notice() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let empty = ThreadState::default();
        let first = TriggerState::from_events(&ready(a));
        assert_eq!(
            in_line(&first, &empty, PerThread::Queue),
            InLine::Join(ThreadRequestQueued { trigger_id: a, retry: 0 })
        );
        let thread = ThreadState::from_events(&[queued(a, 0), queued(b, 0)]);
        assert_eq!(in_line(&first, &thread, PerThread::Queue), InLine::Step(Some(Step::StartConversation)));
        let second = TriggerState::from_events(&ready(b));
        assert_eq!(in_line(&second, &thread, PerThread::Queue), InLine::Step(Some(Step::PostQueuedNotice)));
        let mut noticed = ready(b);
        noticed.push(TriggerEvent::QueuedNoticePosted(QueuedNoticePosted {
            trigger_id: b,
            behind: a,
            comment_id: 9,
            comment_url: None,
        }));
        let noticed = TriggerState::from_events(&noticed);
        assert_eq!(in_line(&noticed, &thread, PerThread::Queue), InLine::Step(None), "it waits");
        let after = ThreadState::from_events(&[queued(a, 0), queued(b, 0), released(a, 0)]);
        assert_eq!(in_line(&noticed, &after, PerThread::Queue), InLine::Step(Some(Step::StartConversation)));
        // `parallel`: the line is kept, but nobody waits in it.
        assert_eq!(
            in_line(&first, &empty, PerThread::Parallel),
            InLine::Join(ThreadRequestQueued { trigger_id: a, retry: 0 })
        );
        assert_eq!(in_line(&second, &thread, PerThread::Parallel), InLine::Step(Some(Step::StartConversation)));
    }

    #[test]
    fn a_trigger_leaves_when_it_is_done_and_a_retry_joins_again() {
        let a = Uuid::from_u128(1);
        let thread = ThreadState::from_events(&[queued(a, 0)]);
        let mut events = ready(a);
        events.push(TriggerEvent::SummaryPosted(SummaryPosted {
            trigger_id: a,
            comment_id: 1,
            outcome: "finished".into(),
            edited: false,
        }));
        assert_eq!(
            in_line(&TriggerState::from_events(&events), &thread, PerThread::Queue),
            InLine::Leave(ThreadRequestReleased { trigger_id: a, retry: 0, reason: "summary_posted".into() })
        );
        // Abandoned at its start: it leaves, and its retry joins at the end.
        let mut events = ready(a);
        events.push(TriggerEvent::TriggerAbandoned(TriggerAbandoned {
            trigger_id: a,
            step: "start_conversation".into(),
            error: "boom".into(),
            attempts: 8,
        }));
        let abandoned = TriggerState::from_events(&events);
        assert_eq!(
            in_line(&abandoned, &thread, PerThread::Queue),
            InLine::Leave(ThreadRequestReleased { trigger_id: a, retry: 0, reason: "abandoned".into() })
        );
        events.push(TriggerEvent::TriggerRetried(TriggerRetried {
            trigger_id: a,
            step: "start_conversation".into(),
            retry: 1,
            requested_by: "admin".into(),
            resumes: None,
        }));
        let left = ThreadState::from_events(&[queued(a, 0), released(a, 0)]);
        assert_eq!(
            in_line(&TriggerState::from_events(&events), &left, PerThread::Queue),
            InLine::Join(ThreadRequestQueued { trigger_id: a, retry: 1 })
        );
        // Out of the line and given up: only saying so is left to do (it held up nobody).
        assert_eq!(in_line(&abandoned, &left, PerThread::Queue), InLine::Step(Some(Step::ReportAbandonment)));
    }

    #[test]
    fn failed_run_suggestions_never_join() {
        let a = Uuid::from_u128(1);
        let state = TriggerState::from_events(&[detected(a, TriggerKind::FailedWorkflow)]);
        assert_eq!(
            in_line(&state, &ThreadState::default(), PerThread::Queue),
            InLine::Step(Some(Step::PostSuggestion))
        );
    }
}
