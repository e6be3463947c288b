//! The lifecycle in given/when/then form: given a trigger's events, when one
//! more arrives, then this step comes next and the trigger has this status.

use uuid::Uuid;

use super::lifecycle::CONVERSATION_REFUSED;
use super::*;
use crate::events::*;

const TRIGGER: Uuid = Uuid::from_u128(7);

fn detected(kind: TriggerKind) -> TriggerEvent {
    TriggerEvent::TriggerDetected(Box::new(super::fixtures::detected(TRIGGER, kind, "@openhands fix it")))
}

fn permission(granted: bool) -> TriggerEvent {
    TriggerEvent::PermissionChecked(PermissionChecked {
        trigger_id: TRIGGER,
        login: "alice".into(),
        permission: if granted { "write" } else { "read" }.into(),
        granted,
        granted_by: None,
    })
}

fn rejected(reason: &str) -> TriggerEvent {
    TriggerEvent::TriggerRejected(TriggerRejected { trigger_id: TRIGGER, reason: reason.into(), message: "no".into() })
}

fn reacted() -> TriggerEvent {
    TriggerEvent::ReactionAdded(ReactionAdded {
        trigger_id: TRIGGER,
        target: "issue_comment".into(),
        reaction_id: None,
    })
}

fn requested() -> TriggerEvent {
    TriggerEvent::ConversationRequested(ConversationRequested {
        trigger_id: TRIGGER,
        command_id: Uuid::nil(),
        repository: "o/r".into(),
        branch: None,
    })
}

fn started() -> TriggerEvent {
    TriggerEvent::ConversationStarted(ConversationStarted {
        trigger_id: TRIGGER,
        conversation_id: "c".into(),
        conversation_url: "https://agent/c".into(),
    })
}

fn acknowledged() -> TriggerEvent {
    TriggerEvent::AcknowledgementPosted(AcknowledgementPosted { trigger_id: TRIGGER, comment_id: 9, comment_url: None })
}

fn agent(state: &str) -> TriggerEvent {
    TriggerEvent::ConversationStatusChanged(ConversationStatusChanged {
        trigger_id: TRIGGER,
        conversation_id: "c".into(),
        agent_state: state.into(),
        reason: None,
        last_message: None,
    })
}

fn summary(outcome: &str) -> TriggerEvent {
    TriggerEvent::SummaryPosted(SummaryPosted {
        trigger_id: TRIGGER,
        comment_id: 10,
        outcome: outcome.into(),
        edited: false,
    })
}

fn failed(step: Step) -> TriggerEvent {
    TriggerEvent::StepFailed(StepFailed {
        trigger_id: TRIGGER,
        step: step.as_str().into(),
        attempt: 1,
        error: "502".into(),
        retry_at_micros: 0,
    })
}

fn abandoned(step: Step) -> TriggerEvent {
    TriggerEvent::TriggerAbandoned(TriggerAbandoned {
        trigger_id: TRIGGER,
        step: step.as_str().into(),
        error: "502".into(),
        attempts: 8,
    })
}

fn reported(step: Step) -> TriggerEvent {
    TriggerEvent::AbandonmentReported(AbandonmentReported {
        trigger_id: TRIGGER,
        step: step.as_str().into(),
        comment_id: 9,
        edited: true,
    })
}

/// The events of a mention that got as far as the conversation running.
fn running() -> Vec<TriggerEvent> {
    vec![detected(TriggerKind::IssueComment), permission(true), reacted(), requested(), started(), acknowledged()]
}

/// Given `events`, then `step` is next and the status is `status` — both in
/// memory and through the SQL the `conversations` read model runs.
fn then(events: &[TriggerEvent], step: Option<Step>, expected: TriggerStatus) {
    let state = TriggerState::from_events(events);
    assert_eq!(next_step(&state), step, "next step after {events:#?}");
    assert_eq!(status(&state), expected, "status after {events:#?}");
    assert_eq!(sql_status(events), expected, "the SQL status after {events:#?}");
}

/// The status as the `conversations` read model computes it: each event's
/// [`StatusChange::sql`] run by SQLite over the row.
fn sql_status(events: &[TriggerEvent]) -> TriggerStatus {
    let db = rusqlite::Connection::open_in_memory().expect("sqlite");
    db.execute_batch("CREATE TABLE t (status TEXT NOT NULL); INSERT INTO t VALUES ('detected');").expect("table");
    for event in events {
        if let Some(expression) = StatusChange::of(event).sql() {
            db.execute(&format!("UPDATE t SET status = {expression}"), []).expect("update");
        }
    }
    let status: String = db.query_row("SELECT status FROM t", [], |row| row.get(0)).expect("row");
    TriggerStatus::parse(&status).expect("a known status")
}

#[test]
fn nothing_happens_before_a_trigger_is_detected() {
    assert_eq!(next_step(&TriggerState::default()), None);
}

#[test]
fn a_mention_goes_through_every_step_in_order() {
    let mut events = vec![detected(TriggerKind::IssueComment)];
    then(&events, Some(Step::CheckPermission), TriggerStatus::Detected);
    events.push(permission(true));
    then(&events, Some(Step::AddReaction), TriggerStatus::Detected);
    events.push(reacted());
    then(&events, Some(Step::StartConversation), TriggerStatus::Detected);
    events.push(requested());
    then(&events, Some(Step::StartConversation), TriggerStatus::Starting);
    events.push(started());
    then(&events, Some(Step::PostAcknowledgement), TriggerStatus::Running);
    events.push(acknowledged());
    then(&events, Some(Step::FollowConversation), TriggerStatus::Running);
    events.push(agent("running"));
    then(&events, Some(Step::FollowConversation), TriggerStatus::Running);
    events.push(agent("finished"));
    then(&events, Some(Step::PostSummary), TriggerStatus::Finished);
    events.push(summary("finished"));
    then(&events, None, TriggerStatus::Finished);
}

#[test]
fn every_trigger_kind_but_failed_runs_asks_for_permission_first() {
    for kind in [TriggerKind::Label, TriggerKind::IssueComment, TriggerKind::PrComment, TriggerKind::ReviewComment] {
        then(&[detected(kind)], Some(Step::CheckPermission), TriggerStatus::Detected);
    }
}

#[test]
fn a_requester_without_write_permission_is_rejected_and_nothing_follows() {
    let events = [detected(TriggerKind::Label), permission(false), rejected("permission_denied")];
    then(&events[..2], None, TriggerStatus::Rejected);
    then(&events, None, TriggerStatus::Rejected);
}

#[test]
fn a_rejection_before_the_permission_ends_the_trigger_silently() {
    for reason in ["agent_not_configured", "github_not_configured", "installation_missing", "installation_suspended"] {
        then(&[detected(TriggerKind::IssueComment), rejected(reason)], None, TriggerStatus::Rejected);
    }
}

#[test]
fn a_runtime_that_refuses_to_start_gets_a_reply_and_the_trigger_stays_rejected() {
    let mut events = vec![detected(TriggerKind::IssueComment), permission(true), reacted(), requested()];
    events.push(rejected(CONVERSATION_REFUSED));
    then(&events, Some(Step::PostSummary), TriggerStatus::Rejected);
    events.push(summary(CONVERSATION_REFUSED));
    then(&events, None, TriggerStatus::Rejected);
}

#[test]
fn a_request_over_a_daily_limit_gets_a_reply_and_stays_rejected() {
    let mut events = vec![detected(TriggerKind::IssueComment), permission(true), reacted()];
    events.push(rejected(LIMIT));
    then(&events, Some(Step::PostSummary), TriggerStatus::Rejected);
    events.push(summary(LIMIT));
    then(&events, None, TriggerStatus::Rejected);
}

#[test]
fn a_run_that_fails_ends_in_a_short_reply_and_the_failed_status() {
    for state in ["error", "stuck", "timed_out", "start_failed", "sandbox_missing", "rate_limited", "stopped"] {
        let mut events = running();
        events.push(agent(state));
        then(&events, Some(Step::PostSummary), TriggerStatus::Failed);
        events.push(summary(state));
        then(&events, None, TriggerStatus::Failed);
    }
}

#[test]
fn a_run_that_ends_before_the_acknowledgement_is_acknowledged_first() {
    let mut events = vec![detected(TriggerKind::PrComment), permission(true), reacted(), requested(), started()];
    events.push(agent("finished"));
    then(&events, Some(Step::PostAcknowledgement), TriggerStatus::Finished);
    events.push(acknowledged());
    then(&events, Some(Step::PostSummary), TriggerStatus::Finished);
}

#[test]
fn only_the_first_end_of_a_run_counts() {
    let mut events = running();
    events.push(agent("finished"));
    events.push(agent("error"));
    let state = TriggerState::from_events(&events);
    assert_eq!(state.ended.as_ref().map(|e| e.agent_state.as_str()), Some("finished"));
    assert_eq!(next_step(&state), Some(Step::PostSummary));
}

#[test]
fn an_unknown_agent_state_changes_nothing() {
    let mut events = running();
    events.push(agent("pondering"));
    then(&events, Some(Step::FollowConversation), TriggerStatus::Running);
}

#[test]
fn a_failed_run_on_a_pull_request_is_answered_with_a_suggestion() {
    let events = [detected(TriggerKind::FailedWorkflow)];
    then(&events, Some(Step::PostSuggestion), TriggerStatus::Detected);
    then(&[detected(TriggerKind::FailedWorkflow), summary("suggested")], None, TriggerStatus::Finished);
    then(&[detected(TriggerKind::FailedWorkflow), rejected("nothing_to_do")], None, TriggerStatus::Rejected);
}

#[test]
fn a_failed_attempt_leaves_the_step_to_be_tried_again() {
    let mut events = running();
    events.truncate(3);
    events.push(failed(Step::StartConversation));
    then(&events, Some(Step::StartConversation), TriggerStatus::Detected);
}

#[test]
fn an_abandoned_step_stops_the_trigger_until_an_admin_retries_it() {
    let mut events = vec![detected(TriggerKind::IssueComment), permission(true), reacted(), requested()];
    events.push(abandoned(Step::StartConversation));
    // Said where the request was made, once; then nothing until a retry.
    then(&events, Some(Step::ReportAbandonment), TriggerStatus::Abandoned);
    events.push(reported(Step::StartConversation));
    then(&events, None, TriggerStatus::Abandoned);

    let state = TriggerState::from_events(&events);
    let (retry, _) = state.retry("api").expect("an abandoned trigger can be retried");
    assert_eq!((retry.step.as_str(), retry.retry), ("start_conversation", 1));
    assert_eq!(retry.resumes.as_deref(), Some("starting"), "it resumes the status it had");
    events.push(TriggerEvent::TriggerRetried(retry));
    then(&events, Some(Step::StartConversation), TriggerStatus::Starting);
    let state = TriggerState::from_events(&events);
    assert_eq!(state.retries, 1);
    assert!(state.retry("api").is_none(), "the abandonment was retried already");

    // Abandoned again: reported again (a new command: the retries differ), and the second retry is a new one.
    events.push(abandoned(Step::StartConversation));
    then(&events, Some(Step::ReportAbandonment), TriggerStatus::Abandoned);
    let state = TriggerState::from_events(&events);
    let (second, _) = state.retry("api").expect("abandoned again");
    assert_eq!(second.retry, 2);
}

#[test]
fn an_abandonment_is_reported_only_to_someone_who_may_ask_and_never_about_itself() {
    // Before the permission is known: nobody to tell.
    let early = vec![detected(TriggerKind::IssueComment), abandoned(Step::CheckPermission)];
    then(&early, None, TriggerStatus::Abandoned);
    // A proactive suggestion nobody asked for.
    let suggestion = vec![detected(TriggerKind::FailedWorkflow), abandoned(Step::PostSuggestion)];
    then(&suggestion, None, TriggerStatus::Abandoned);
    // The report itself failed: not reported again.
    let mut events = running();
    events.push(abandoned(Step::FollowConversation));
    then(&events, Some(Step::ReportAbandonment), TriggerStatus::Abandoned);
    let mut failed_report = running();
    failed_report.push(abandoned(Step::ReportAbandonment));
    then(&failed_report, None, TriggerStatus::Abandoned);
    // Once reported, done; a retry makes it to do again.
    let state = TriggerState::from_events(&events);
    assert!(!state.has_done(Step::ReportAbandonment));
    events.push(reported(Step::FollowConversation));
    assert!(TriggerState::from_events(&events).has_done(Step::ReportAbandonment));
}

#[test]
fn asking_twice_for_the_retry_of_one_abandonment_yields_the_same_event_id() {
    let mut state = TriggerState::default();
    state.apply(&abandoned(Step::PostSummary), Uuid::from_u128(42), 0);
    let (_, first) = state.retry("api").expect("abandoned");
    let (_, second) = state.retry("cli").expect("abandoned");
    assert_eq!(first, second);
    let mut other = TriggerState::default();
    other.apply(&abandoned(Step::PostSummary), Uuid::from_u128(43), 0);
    assert_ne!(other.retry("api").expect("abandoned").1, first, "another abandonment, another retry");
}

#[test]
fn a_retry_recorded_before_retries_named_their_status_resumes_detected() {
    let mut events = running();
    events.push(abandoned(Step::PostSummary));
    events.push(TriggerEvent::TriggerRetried(TriggerRetried {
        trigger_id: TRIGGER,
        step: "post_summary".into(),
        retry: 1,
        requested_by: "api".into(),
        resumes: None,
    }));
    then(&events, Some(Step::FollowConversation), TriggerStatus::Detected);
}

#[test]
fn each_step_knows_when_it_is_done() {
    let state = TriggerState::from_events(&running());
    for step in [Step::CheckPermission, Step::AddReaction, Step::StartConversation, Step::PostAcknowledgement] {
        assert!(state.has_done(step), "{step:?}");
    }
    assert!(!state.has_done(Step::FollowConversation));
    assert!(!state.has_done(Step::PostSummary));
}

#[test]
fn every_step_name_parses_back() {
    for step in Step::ALL {
        assert_eq!(Step::parse(step.as_str()), Some(step));
    }
    for status in TriggerStatus::ALL {
        assert_eq!(TriggerStatus::parse(status.as_str()), Some(status));
    }
}

fn stopped() -> TriggerEvent {
    TriggerEvent::ConversationStopped(ConversationStopped {
        trigger_id: TRIGGER,
        conversation_id: "c".into(),
        stopped_by: "bob".into(),
        stop_id: Uuid::from_u128(8),
    })
}

#[test]
fn a_stopped_run_is_ended_and_stays_stopped_whatever_the_runtime_says_after() {
    let mut events = running();
    events.push(stopped());
    then(&events, Some(Step::PostSummary), TriggerStatus::Stopped);
    assert!(!stop::is_running(&TriggerState::from_events(&events)));
    // The runtime reports the pause, or an end, after the stop: still stopped.
    for state in ["paused", "finished", "error"] {
        let mut later = events.clone();
        later.push(agent(state));
        then(&later, Some(Step::PostSummary), TriggerStatus::Stopped);
    }
    events.push(summary(stop::STOPPED_BY_REQUEST));
    then(&events, None, TriggerStatus::Stopped);
    // A run that ended before the stop landed keeps its end.
    let mut ended = running();
    ended.push(agent("finished"));
    ended.push(stopped());
    then(&ended, Some(Step::PostSummary), TriggerStatus::Finished);
    assert!(stop::is_running(&TriggerState::from_events(&running())));
}
