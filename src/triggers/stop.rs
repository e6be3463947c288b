//! Stop from GitHub: a new comment whose word right after the handle is
//! `stop` (`@openhands stop`, `@OpenHands STOP please`) is not a request for
//! the agent but a request to stop the one running on that issue or pull
//! request. Decided on top of `classify`'s result ([`asks_to_stop`]); its own
//! small lifecycle on stream `stop-{id}` ([`StopState`]): requested →
//! answered, in one step (`stop_conversation`).

use super::state::FoldError;
use super::{status, TriggerState, TriggerStatus};
use crate::events::{
    DecodeError, DomainEvent, StepFailed, StopAnswered, StopRequested, TriggerAbandoned, TriggerDetected, TriggerKind,
};
use crate::store::RecordedEvent;

/// The `outcome` of the summary of a stopped run: not an agent state (V0's
/// own `stopped` is a failure), so the summary leaves the status `stopped`.
pub const STOPPED_BY_REQUEST: &str = "stopped_by_request";

/// Whether a comment classify took for a request asks to stop instead: a new
/// comment (issue, pull request or inline) with `stop` right after the handle.
pub fn asks_to_stop(request: &TriggerDetected, handle: &str) -> bool {
    matches!(request.kind, TriggerKind::IssueComment | TriggerKind::PrComment | TriggerKind::ReviewComment)
        && says_stop(&request.message, handle)
}

/// Whether `text` has a mention of `handle` (the rule of
/// `classify::mentions`) whose next word is `stop`, in any case: after the
/// handle an optional `,` or `:`, then white space, then `stop` ending the
/// text or followed by neither a word character nor `-`. So `@openhands
/// stop.` and `@OpenHands, STOP please` stop; `@openhands stopping`,
/// `@openhands don't stop` and `x@openhands stop` do not.
pub fn says_stop(text: &str, handle: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    !handle.is_empty()
        && super::classify::after_mentions(text, handle).any(|after| {
            let rest = after.strip_prefix([',', ':']).unwrap_or(after);
            let word = rest.trim_start();
            if word.len() == after.len() {
                // Nothing between the handle and the word: `@openhands!stop` is no stop.
                return false;
            }
            word.get(..4)
                .filter(|w| w.eq_ignore_ascii_case("stop"))
                .is_some_and(|_| word[4..].chars().next().is_none_or(|c| !is_word(c) && c != '-'))
        })
}

/// Whether a trigger's conversation is running, so a stop can stop it: started,
/// and neither ended nor stopped nor answered.
pub fn is_running(state: &TriggerState) -> bool {
    state.started.is_some()
        && state.ended.is_none()
        && state.stopped.is_none()
        && state.summary.is_none()
        && !matches!(status(state), TriggerStatus::Abandoned | TriggerStatus::Rejected)
}

/// A stop as its stream tells it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StopState {
    pub requested: Option<StopRequested>,
    pub answered: Option<StopAnswered>,
    /// Its step failed its last attempt (an admin retry does not apply to stops).
    pub abandoned: bool,
}

impl StopState {
    pub fn fold(events: &[RecordedEvent]) -> Result<StopState, FoldError> {
        let mut state = StopState::default();
        for recorded in events {
            let fail = |source: DecodeError| FoldError {
                event_type: recorded.event_type.clone(),
                position: recorded.position,
                source,
            };
            match recorded.event_type.as_str() {
                StopRequested::TYPE => state.requested = Some(StopRequested::decode(recorded).map_err(fail)?),
                StopAnswered::TYPE => state.answered = Some(StopAnswered::decode(recorded).map_err(fail)?),
                TriggerAbandoned::TYPE => state.abandoned = true,
                StepFailed::TYPE => {}
                _ => {}
            }
        }
        Ok(state)
    }

    /// Whether its step is still to be done.
    pub fn is_open(&self) -> bool {
        self.requested.is_some() && self.answered.is_none() && !self.abandoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(kind: TriggerKind, message: &str) -> TriggerDetected {
        crate::triggers::fixtures::detected(uuid::Uuid::nil(), kind, message)
    }

    #[test]
    fn only_a_new_comment_saying_stop_is_a_stop() {
        for kind in [TriggerKind::IssueComment, TriggerKind::PrComment, TriggerKind::ReviewComment] {
            assert!(asks_to_stop(&comment(kind, "@openhands stop"), "@openhands"), "{kind:?}");
            assert!(!asks_to_stop(&comment(kind, "@openhands fix it"), "@openhands"), "{kind:?}");
        }
        // An edit, a review, a label or an assignment is never a stop.
        for kind in [
            TriggerKind::EditedIssueComment,
            TriggerKind::EditedPrComment,
            TriggerKind::EditedReviewComment,
            TriggerKind::PrReview,
            TriggerKind::Label,
            TriggerKind::IssueAssigned,
        ] {
            assert!(!asks_to_stop(&comment(kind, "@openhands stop"), "@openhands"), "{kind:?}");
        }
    }

    #[test]
    fn the_word_right_after_the_handle_is_stop() {
        let cases = [
            ("@openhands stop", true),
            ("@OpenHands STOP please", true),
            ("@openhands Stop.", true),
            ("@openhands stop!", true),
            ("@openhands, stop", true),
            ("@openhands: stop", true),
            ("@openhands\n\nstop", true),
            ("please @openhands stop now", true),
            ("(@openhands stop)", true),
            ("thanks @openhands, and @openhands stop", true),
            ("@openhands stopping", false),
            ("@openhands stop-gap fix", false),
            ("@openhands stops", false),
            ("@openhands don't stop", false),
            ("@openhands please stop", false),
            ("stop @openhands", false),
            ("@openhandsstop", false),
            ("@openhands!stop", false),
            ("user@openhands stop", false),
            ("@openhands-agent stop", false),
            ("@@openhands stop", false),
            ("@openhands", false),
            ("@openhands st", false),
            ("@openhands stoü", false),
            ("ü @openhands stop ü", true),
            ("", false),
        ];
        for (text, expected) in cases {
            assert_eq!(says_stop(text, "@openhands"), expected, "{text:?}");
        }
        assert!(says_stop("@my-bot stop", "@my-bot"));
        assert!(!says_stop("@openhands stop", "@my-bot"));
        assert!(!says_stop("stop", ""));
    }
}
