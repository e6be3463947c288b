//! Operators' daily limits (`HOOKWISE_MAX_PER_USER_PER_DAY`,
//! `HOOKWISE_MAX_PER_REPO_PER_DAY`): how many requests of one requester or one
//! repository may start a conversation in one UTC day. Pure: the process
//! manager folds the day's admissions stream and appends what [`decide`] says.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

use super::thread::{self, ThreadState};
use super::{is_over, TriggerState};
use crate::events::{
    derived_id, streams, DecodeError, DomainEvent, RequestAdmitted, ThreadRequestQueued, ThreadRequestReleased,
    TriggerDetected,
};
use crate::store::RecordedEvent;

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// The limits; 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyLimits {
    pub per_user: u32,
    pub per_repo: u32,
}

impl DailyLimits {
    pub fn any(self) -> bool {
        self.per_user > 0 || self.per_repo > 0
    }
}

/// Which limit a request is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PerUser(u32),
    PerRepo(u32),
    /// Not daily: `HOOKWISE_MAX_PROACTIVE_PER_PR`, for ever.
    ProactivePerPr(u32),
}

/// The requests admitted on one day, as its stream tells them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DailyAdmissions {
    pub admitted: HashSet<Uuid>,
    pub per_user: HashMap<u64, u32>,
    pub per_repo: HashMap<u64, u32>,
    /// The version of the stream's last event (`None`: no event yet).
    pub version: Option<u64>,
}

impl DailyAdmissions {
    /// The day's admissions; an event that does not decode is returned with why.
    pub fn fold(events: &[RecordedEvent]) -> Result<DailyAdmissions, (&RecordedEvent, DecodeError)> {
        let mut day = DailyAdmissions::default();
        for event in events {
            day.version = Some(event.version);
            if event.event_type != RequestAdmitted::TYPE {
                continue;
            }
            let admitted = RequestAdmitted::decode(event).map_err(|e| (event, e))?;
            if day.admitted.insert(admitted.trigger_id) {
                *day.per_user.entry(admitted.requester_id).or_default() += 1;
                *day.per_repo.entry(admitted.repository_id).or_default() += 1;
            }
        }
        Ok(day)
    }
}

/// `HOOKWISE_MAX_RUNNING` and `HOOKWISE_MAX_RUNNING_PER_REPO`; 0 is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunningLimits {
    pub global: u32,
    pub per_repo: u32,
}

impl RunningLimits {
    /// The lines a start of `repository_id` must pass, each with its limit,
    /// in the order it passes them: its repository's first, so a request
    /// waiting for its repository takes no global place.
    pub fn lines(self, repository_id: u64) -> Vec<(String, u32)> {
        let mut lines = Vec::new();
        if self.per_repo > 0 {
            lines.push((streams::running_repo(repository_id), self.per_repo));
        }
        if self.global > 0 {
            lines.push((streams::RUNNING_ALL.to_owned(), self.global));
        }
        lines
    }
}

/// What one running line makes of a trigger.
#[derive(Debug, Clone, PartialEq)]
pub enum RunningTurn {
    /// About to start and not in line: it joins (at the end).
    Join(ThreadRequestQueued),
    /// In line with `max` or more ahead of it: its start waits.
    Wait,
    /// Past this line: its start may go on (or there is nothing to start).
    Go,
    /// Done and still in line: it leaves, and the next may start.
    Leave(ThreadRequestReleased),
}

/// The running line's say on `state`, a line whose first `max` may run. The
/// same events as the per-thread line ([`thread`]), on a stream of their own.
pub fn running_turn(state: &TriggerState, line: &ThreadState, max: u32) -> RunningTurn {
    let Some(detected) = &state.detected else { return RunningTurn::Go };
    let trigger_id = detected.trigger_id;
    let position = line.position(trigger_id);
    if is_over(state) {
        return match position {
            Some(_) => RunningTurn::Leave(ThreadRequestReleased {
                trigger_id,
                retry: line.retry_of(trigger_id).unwrap_or(state.retries),
                reason: thread::ended(state).to_owned(),
            }),
            None => RunningTurn::Go,
        };
    }
    // Asked for its conversation already (before the limit was set, or a retry of a later step).
    if state.requested.is_some() {
        return RunningTurn::Go;
    }
    match position {
        None if line.has_left(trigger_id, state.retries) => RunningTurn::Go,
        None => RunningTurn::Join(ThreadRequestQueued { trigger_id, retry: state.retries }),
        Some(ahead) if ahead >= max as usize => RunningTurn::Wait,
        Some(_) => RunningTurn::Go,
    }
}

/// The id of a running line's event: event ids are unique across the log,
/// so the stream is part of it (the per-thread line uses the trigger's alone).
pub fn running_event_id(stream: &str, kind: &str, trigger_id: Uuid, retry: u32) -> Uuid {
    derived_id(&[kind, stream, &trigger_id.to_string(), &retry.to_string()])
}

/// What becomes of a request about to start.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Admitted before (a replay, a retry): start.
    Already,
    /// Room left: append this, then start.
    Admit(RequestAdmitted),
    /// Over a limit: rejected.
    Over(Limit),
}

/// Whether `trigger` may start today, `today` holding the day's admissions.
/// A limit is reached at its number: the `n`-th request of the day starts,
/// the `n+1`-th does not.
pub fn decide(limits: DailyLimits, today: &DailyAdmissions, trigger: &TriggerDetected) -> Admission {
    if today.admitted.contains(&trigger.trigger_id) {
        return Admission::Already;
    }
    let count = |counts: &HashMap<u64, u32>, key: u64| counts.get(&key).copied().unwrap_or(0);
    if limits.per_user > 0 && count(&today.per_user, trigger.requester.id) >= limits.per_user {
        return Admission::Over(Limit::PerUser(limits.per_user));
    }
    if limits.per_repo > 0 && count(&today.per_repo, trigger.repository.id) >= limits.per_repo {
        return Admission::Over(Limit::PerRepo(limits.per_repo));
    }
    Admission::Admit(RequestAdmitted {
        trigger_id: trigger.trigger_id,
        repository_id: trigger.repository.id,
        requester_id: trigger.requester.id,
    })
}

/// Whether one more proactive suggestion may be posted on a pull request
/// that had those of `admitted` (`max` > 0).
pub fn decide_proactive(max: u32, admitted: &DailyAdmissions, trigger: &TriggerDetected) -> Admission {
    if admitted.admitted.contains(&trigger.trigger_id) {
        Admission::Already
    } else if admitted.admitted.len() >= max as usize {
        Admission::Over(Limit::ProactivePerPr(max))
    } else {
        Admission::Admit(RequestAdmitted {
            trigger_id: trigger.trigger_id,
            repository_id: trigger.repository.id,
            requester_id: trigger.requester.id,
        })
    }
}

/// The UTC day of `micros` (since the Unix epoch) as `YYYY-MM-DD`.
pub fn utc_day(micros: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// The day before the one of `micros`.
pub fn previous_utc_day(micros: i64) -> String {
    utc_day(micros - MICROS_PER_DAY)
}

/// The next UTC midnight after `micros`, as `YYYY-MM-DD 00:00 UTC`: when a
/// daily limit resets.
pub fn reset_time(micros: i64) -> String {
    format!("{} 00:00 UTC", utc_day(micros + MICROS_PER_DAY))
}

/// The rejection's message (the reply says "Sorry, I couldn't start working
/// on this: {message}."): which limit, and when it resets.
pub fn over_limit_message(limit: Limit, requester: &str, now_micros: i64) -> String {
    let reset = reset_time(now_micros);
    match limit {
        Limit::PerUser(n) => format!(
            "@{requester} has reached today's limit of {n} {} per user (HOOKWISE_MAX_PER_USER_PER_DAY); it resets at {reset}",
            requests(n)
        ),
        Limit::ProactivePerPr(n) => {
            format!("this pull request has had its {n} proactive {} (HOOKWISE_MAX_PROACTIVE_PER_PR)", suggestions(n))
        }
        Limit::PerRepo(n) => format!(
            "this repository has reached today's limit of {n} {} (HOOKWISE_MAX_PER_REPO_PER_DAY); it resets at {reset}",
            requests(n)
        ),
    }
}

fn suggestions(n: u32) -> &'static str {
    if n == 1 {
        "suggestion"
    } else {
        "suggestions"
    }
}

fn requests(n: u32) -> &'static str {
    if n == 1 {
        "request"
    } else {
        "requests"
    }
}

/// The time the daily limits count by, in microseconds since the Unix epoch:
/// the system's, or one a test sets.
#[derive(Clone)]
pub struct LimitsClock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl LimitsClock {
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> LimitsClock {
        LimitsClock(Arc::new(now))
    }

    pub fn now_micros(&self) -> i64 {
        (self.0)()
    }
}

impl Default for LimitsClock {
    fn default() -> Self {
        LimitsClock::from_fn(crate::store::now_micros)
    }
}

impl fmt::Debug for LimitsClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LimitsClock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Position;

    fn trigger(id: u128, user: u64, repo: u64) -> TriggerDetected {
        let mut trigger = crate::triggers::fixtures::detected(
            Uuid::from_u128(id),
            crate::events::TriggerKind::IssueComment,
            "@openhands go",
        );
        trigger.repository.id = repo;
        trigger.requester.id = user;
        trigger
    }

    fn recorded(admitted: &[RequestAdmitted]) -> Vec<RecordedEvent> {
        admitted
            .iter()
            .enumerate()
            .map(|(version, a)| {
                let new = a.to_new_event(a.event_id("admissions-2026-12-01"), None).expect("JSON");
                RecordedEvent {
                    position: Position(version as u64 + 1),
                    stream: "admissions-2026-12-01".into(),
                    version: version as u64,
                    event_id: new.event_id,
                    event_type: new.event_type,
                    schema_version: new.schema_version,
                    data: new.data,
                    payload: None,
                    recorded_at_micros: 0,
                }
            })
            .collect()
    }

    fn admit(limits: DailyLimits, day: &[RequestAdmitted], t: &TriggerDetected) -> Admission {
        let events = recorded(day);
        decide(limits, &DailyAdmissions::fold(&events).expect("fold"), t)
    }

    fn admitted(t: &TriggerDetected) -> RequestAdmitted {
        RequestAdmitted { trigger_id: t.trigger_id, repository_id: t.repository.id, requester_id: t.requester.id }
    }

    #[test]
    fn a_user_limit_is_reached_at_its_number() {
        let limits = DailyLimits { per_user: 2, per_repo: 0 };
        let (a, b, c) = (trigger(1, 10, 1), trigger(2, 10, 1), trigger(3, 10, 1));
        assert_eq!(admit(limits, &[], &a), Admission::Admit(admitted(&a)));
        assert_eq!(admit(limits, &[admitted(&a)], &b), Admission::Admit(admitted(&b)));
        assert_eq!(admit(limits, &[admitted(&a), admitted(&b)], &c), Admission::Over(Limit::PerUser(2)));
        // Someone else, and those already admitted, still start.
        assert!(matches!(admit(limits, &[admitted(&a), admitted(&b)], &trigger(4, 11, 1)), Admission::Admit(_)));
        assert_eq!(admit(limits, &[admitted(&a), admitted(&b)], &b), Admission::Already);
        // An admission appended twice counts once.
        assert!(matches!(admit(limits, &[admitted(&a), admitted(&a)], &b), Admission::Admit(_)));
    }

    #[test]
    fn a_repository_limit_counts_every_requester() {
        let limits = DailyLimits { per_user: 0, per_repo: 2 };
        let day = [admitted(&trigger(1, 10, 1)), admitted(&trigger(2, 11, 1))];
        assert_eq!(admit(limits, &day, &trigger(3, 12, 1)), Admission::Over(Limit::PerRepo(2)));
        assert!(matches!(admit(limits, &day, &trigger(4, 12, 2)), Admission::Admit(_)), "another repository");
        assert!(matches!(admit(DailyLimits::default(), &day, &trigger(5, 10, 1)), Admission::Admit(_)));
    }

    /// A trigger whose next step is to start its conversation.
    fn ready(id: u128) -> Vec<crate::triggers::TriggerEvent> {
        use crate::events::{PermissionChecked, ReactionAdded};
        use crate::triggers::TriggerEvent;
        let trigger_id = Uuid::from_u128(id);
        vec![
            TriggerEvent::TriggerDetected(Box::new(trigger(id, 10, 1))),
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

    #[test]
    fn the_first_max_in_a_running_line_start_and_the_others_wait() {
        use crate::events::SummaryPosted;
        use crate::triggers::thread::ThreadEvent;
        use crate::triggers::TriggerEvent;
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let joined = |id| ThreadEvent::Queued(ThreadRequestQueued { trigger_id: id, retry: 0 });
        let state = |id| TriggerState::from_events(&ready(id));
        assert_eq!(
            running_turn(&state(3), &ThreadState::default(), 2),
            RunningTurn::Join(ThreadRequestQueued { trigger_id: c, retry: 0 })
        );
        let line = ThreadState::from_events(&[joined(a), joined(b), joined(c)]);
        assert_eq!(running_turn(&state(2), &line, 2), RunningTurn::Go, "the second of two places");
        assert_eq!(running_turn(&state(3), &line, 2), RunningTurn::Wait, "one over the limit");
        let mut done = ready(1);
        done.push(TriggerEvent::SummaryPosted(SummaryPosted {
            trigger_id: a,
            comment_id: 1,
            outcome: "finished".into(),
            edited: false,
        }));
        assert_eq!(
            running_turn(&TriggerState::from_events(&done), &line, 2),
            RunningTurn::Leave(ThreadRequestReleased { trigger_id: a, retry: 0, reason: "summary_posted".into() })
        );
        let after = ThreadState::from_events(&[
            joined(a),
            joined(b),
            joined(c),
            ThreadEvent::Released(ThreadRequestReleased { trigger_id: a, retry: 0, reason: "summary_posted".into() }),
        ]);
        assert_eq!(running_turn(&state(3), &after, 2), RunningTurn::Go, "a place freed");
        assert_eq!(running_turn(&TriggerState::from_events(&done), &after, 2), RunningTurn::Go, "left: nothing more");
        assert_eq!(
            RunningLimits { global: 2, per_repo: 1 }.lines(7),
            vec![("running-repo-7".to_owned(), 1), ("running-all".to_owned(), 2)]
        );
        assert!(RunningLimits::default().lines(7).is_empty());
    }

    #[test]
    fn a_trigger_that_gave_up_leaves_its_running_line_before_saying_so() {
        use crate::events::{ConversationRequested, TriggerAbandoned};
        use crate::triggers::thread::ThreadEvent;
        use crate::triggers::{next_step, Step, TriggerEvent};
        let a = Uuid::from_u128(1);
        let mut events = ready(1);
        events.push(TriggerEvent::ConversationRequested(ConversationRequested {
            trigger_id: a,
            command_id: Uuid::nil(),
            repository: "o/r".into(),
            branch: None,
        }));
        events.push(TriggerEvent::TriggerAbandoned(TriggerAbandoned {
            trigger_id: a,
            step: "start_conversation".into(),
            error: "boom".into(),
            attempts: 8,
        }));
        let state = TriggerState::from_events(&events);
        assert_eq!(next_step(&state), Some(Step::ReportAbandonment), "the report is still to come");
        let line = ThreadState::from_events(&[ThreadEvent::Queued(ThreadRequestQueued { trigger_id: a, retry: 0 })]);
        assert_eq!(
            running_turn(&state, &line, 1),
            RunningTurn::Leave(ThreadRequestReleased { trigger_id: a, retry: 0, reason: "abandoned".into() })
        );
    }

    #[test]
    fn proactive_suggestions_stop_at_their_number_per_pull_request() {
        let (a, b, c) = (trigger(1, 10, 1), trigger(2, 10, 1), trigger(3, 10, 1));
        let decide = |day: &[RequestAdmitted], t: &TriggerDetected| {
            let events = recorded(day);
            decide_proactive(2, &DailyAdmissions::fold(&events).expect("fold"), t)
        };
        assert!(matches!(decide(&[admitted(&a)], &b), Admission::Admit(_)));
        assert_eq!(decide(&[admitted(&a), admitted(&b)], &c), Admission::Over(Limit::ProactivePerPr(2)));
        assert_eq!(decide(&[admitted(&a), admitted(&b)], &b), Admission::Already);
    }

    #[test]
    fn days_are_utc_and_reset_at_the_next_midnight() {
        // 2026-12-01T23:59:59Z and one second later.
        let late = 1_796_169_599_000_000;
        assert_eq!(utc_day(late), "2026-12-01");
        assert_eq!(utc_day(late + 1_000_000), "2026-12-02");
        assert_eq!(previous_utc_day(late), "2026-11-30");
        assert_eq!(reset_time(late), "2026-12-02 00:00 UTC");
        let message = over_limit_message(Limit::PerUser(1), "octo", late);
        assert!(
            message.contains("limit of 1 request per user") && message.contains("2026-12-02 00:00 UTC"),
            "{message}"
        );
    }
}
