//! One status comment per request (`HOOKWISE_REPLY_STYLE=edit`, the
//! default): "I'm on it" is edited into every final state — finished and
//! the agent's error are in `triggers.rs`; here a run that times out,
//! hookwise's own failure (and the admin's retry that follows), and a crash
//! between an edit and its record.

use std::time::{Duration, Instant};

use hookwise::events::{AbandonmentReported, DomainEvent, SummaryPosted, TriggerAbandoned, TriggerDetected};
use hookwise::process::command_id;
use hookwise::triggers::Step;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{backend_tests, read_whole_log, sign, Backend, TestApp, TestDatabase, TEST_SECRET};
use crate::triggers::{body_of, callback, comment_payload, finished_batch, start_binary, Fakes, CALLBACK_KEY, REPO};

backend_tests!(
    a_run_past_the_run_timeout_ends_its_status_comment_as_timed_out,
    hookwise_giving_up_says_so_in_the_status_comment_and_a_retry_finishes_it,
    a_crash_between_the_edit_and_its_record_writes_no_second_comment_and_no_second_edit,
);

async fn spawn_with(backend: Backend, fakes: &Fakes, extra: &[&str]) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let mut flags = fakes.flags();
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(TestApp::spawn_on(db, &flags).await)
}

/// The hidden marker of `step`'s first command for the trigger.
fn marker(trigger: &TriggerDetected, step: Step) -> String {
    format!("<!-- hookwise:{} -->", command_id(trigger.trigger_id, step, 0))
}

async fn a_run_past_the_run_timeout_ends_its_status_comment_as_timed_out(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    // V0 cannot say how a run stands: it runs until the timeout.
    let flags = ["--agent-run-timeout", "1s", "--agent-poll-interval", "100ms"];
    let Some(app) = spawn_with(backend, &fakes, &flags).await else { return };
    assert_eq!(app.deliver("issue_comment", "d-slow", &comment_payload(9700, "@openhands go")).await.status(), 200);

    let edits = fakes.wait_for_edits(1).await;
    let trigger: TriggerDetected = app.first_event().await;
    assert_eq!(edits[0].url.path(), format!("/repos/{REPO}/issues/comments/500"));
    assert_eq!(
        body_of(&edits[0])["body"],
        format!(
            "**Status:** timed out.\n\nSorry, I stopped before finishing (the agent ended in state `timed_out`: \
             still running after 1s (AGENT_RUN_TIMEOUT)). [See the conversation here](https://agent.example/c/conv-1).\
             \n\n{}",
            marker(&trigger, Step::PostSummary)
        )
    );
    let posted: SummaryPosted = app.first_event().await;
    assert_eq!((posted.outcome.as_str(), posted.comment_id, posted.edited), ("timed_out", 500, true));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "one comment");
    assert_eq!(fakes.edits().await.len(), 1, "edited once");
    app.stop().await;
}

async fn hookwise_giving_up_says_so_in_the_status_comment_and_a_retry_finishes_it(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    // The result cannot be written: both attempts of the summary fail.
    Mock::given(method("PATCH"))
        .and(path(format!("/repos/{REPO}/issues/comments/500")))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "Server Error"})))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    let flags = ["--retry-max-attempts", "2", "--api-token", "admin-token"];
    let Some(app) = spawn_with(backend, &fakes, &flags).await else { return };
    assert_eq!(app.deliver("issue_comment", "d-give-up", &comment_payload(9710, "@openhands go")).await.status(), 200);
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
    assert_eq!(callback(&app, CALLBACK_KEY, finished_batch("conv-1")).await.status(), 202);

    // Abandoned after two failed attempts; the third edit says so.
    let abandoned: TriggerAbandoned = app.first_event().await;
    assert_eq!((abandoned.step.as_str(), abandoned.attempts), ("post_summary", 2));
    let edits = fakes.wait_for_edits(3).await;
    let trigger: TriggerDetected = app.first_event().await;
    let report_command = command_id(trigger.trigger_id, Step::ReportAbandonment, 0);
    assert_eq!(
        body_of(&edits[2])["body"],
        format!(
            "**Status:** failed.\n\nSorry, I gave up: I could not post the agent's result (2 attempts; the last \
             failed with: GitHub answered 500: Server Error). [See the conversation here](https://agent.example/c/conv-1). \
             An operator can retry it: `POST /api/v1/admin/triggers/{}/retry`.\n\n<!-- hookwise:{report_command} -->",
            trigger.trigger_id
        )
    );
    let reported: AbandonmentReported = app.first_event().await;
    assert_eq!((reported.comment_id, reported.edited), (500, true));
    let conversation = format!("/api/v1/conversations/{}", trigger.trigger_id);
    crate::helpers::eventually(Duration::from_secs(20), "the report in the read model", || async {
        let row: Value = app
            .http
            .get(app.url(&conversation))
            .bearer_auth("admin-token")
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("JSON");
        row["status"] == "abandoned" && row["abandonment_reported_at"].is_string() && row["status_comment_id"] == 500
    })
    .await;

    // An admin's retry writes the result into the same comment.
    let retry = app.url(&format!("/api/v1/admin/triggers/{}/retry", trigger.trigger_id));
    assert_eq!(app.http.post(retry).bearer_auth("admin-token").send().await.expect("answer").status(), 200);
    let edits = fakes.wait_for_edits(4).await;
    let summary_command = command_id(trigger.trigger_id, Step::PostSummary, 1);
    assert_eq!(
        body_of(&edits[3])["body"],
        format!(
            "**Status:** finished.\n\nI fixed the spelling in README.md.\n\n\
             [See the whole conversation here](https://agent.example/c/conv-1).\n\n<!-- hookwise:{summary_command} -->"
        )
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "one comment throughout");
    assert_eq!(fakes.edits().await.len(), 4);
    app.stop().await;
}

async fn a_crash_between_the_edit_and_its_record_writes_no_second_comment_and_no_second_edit(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    // GitHub applies the edit, but its answer comes too late: hookwise dies first.
    Mock::given(method("PATCH"))
        .and(path(format!("/repos/{REPO}/issues/comments/500")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 500})).set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let (mut child, base) = start_binary(&db.url, &fakes);
    let http = reqwest::Client::new();
    let body = comment_payload(9720, "@openhands fix it");
    let delivered = http
        .post(format!("{base}/integration/github/events"))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", "d-crash-edit")
        .header("x-hub-signature-256", sign(TEST_SECRET, &body))
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(delivered.status(), 200);
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let finished = http
        .post(format!("{base}/event-webhook/batch"))
        .header("x-session-api-key", CALLBACK_KEY)
        .json(&finished_batch("conv-1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(finished.status(), 202);

    let edits = fakes.wait_for_edits(1).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the child");
    let written = body_of(&edits[0])["body"].as_str().expect("body").to_owned();
    {
        let store = db.open_store().await;
        let log = read_whole_log(store.as_ref()).await;
        assert!(!log.iter().any(|e| e.event_type == SummaryPosted::TYPE), "killed before the answer came");
        store.close().await;
    }

    // GitHub holds the edited comment.
    Mock::given(method("GET"))
        .and(path_regex(format!(r"^/repos/{REPO}/issues/comments/500$")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 500, "body": written})))
        .mount(&fakes.github)
        .await;
    let (mut child, _) = start_binary(&db.url, &fakes);
    let store = db.open_store().await;
    let started = Instant::now();
    let log = loop {
        let log = read_whole_log(store.as_ref()).await;
        if log.iter().any(|e| e.event_type == SummaryPosted::TYPE) {
            break log;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no SummaryPosted after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the child");
    store.close().await;

    let trigger = log.iter().find(|e| e.event_type == TriggerDetected::TYPE).expect("detected");
    let trigger = TriggerDetected::decode(trigger).expect("decodes");
    assert_eq!(
        written,
        format!(
            "**Status:** finished.\n\nI fixed the spelling in README.md.\n\n\
             [See the whole conversation here](https://agent.example/c/conv-1).\n\n{}",
            marker(&trigger, Step::PostSummary)
        ),
        "the right final text"
    );
    let posted: Vec<_> = log.iter().filter(|e| e.event_type == SummaryPosted::TYPE).collect();
    assert_eq!(posted.len(), 1);
    let posted = SummaryPosted::decode(posted[0]).expect("decodes");
    assert_eq!((posted.comment_id, posted.edited), (500, true));
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "no second comment");
    assert_eq!(fakes.edits().await.len(), 1, "the text it holds is not written again");
    assert!(!fakes.requests("GET", "/issues/comments/500").await.is_empty(), "it looked before writing");
}
