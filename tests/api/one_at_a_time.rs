//! One conversation at a time per issue or pull request
//! (`HOOKWISE_PER_THREAD`): a request made while another runs on the same
//! pull request waits its turn, says so, and starts when the first ends.
//! And stop from GitHub (`@openhands stop`): a writer's stop stops the
//! running one, anyone else's does nothing.
//! wiremock stands in for GitHub and for the agent runtime (V0, whose runs
//! end when its callbacks say so, so the test decides when).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hookwise::events::{DomainEvent, StopAnswered};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::{backend_tests, eventually, Backend, TestApp, TestDatabase};
use crate::triggers::{body_of, callback, comment_payload, Fakes, CALLBACK_KEY, REPO};

backend_tests!(
    two_requests_on_one_pull_request_run_one_after_the_other,
    the_line_survives_a_restart,
    parallel_starts_both_at_once,
    a_writers_stop_stops_the_running_one_and_the_next_starts,
    a_readers_stop_does_nothing,
    a_stop_with_nothing_running_gets_one_short_reply,
);

const TOKEN: &str = "test-api-token";

/// The V0 runtime's start, answering `conv-1`, `conv-2`, … in turn.
struct NumberedConversations(AtomicUsize);

impl Respond for NumberedConversations {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({"status": "ok", "conversation_id": format!("conv-{n}")}))
    }
}

/// GitHub and a runtime for requests on pull request #1.
async fn fakes() -> Fakes {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/pulls/1")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"head": {"ref": "fix-typo", "sha": "abc"}})))
        .mount(&fakes.github)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/conversations"))
        .respond_with(NumberedConversations(AtomicUsize::new(0)))
        .with_priority(1)
        .mount(&fakes.agent)
        .await;
    fakes
}

fn flags(fakes: &Fakes, extra: &[&str]) -> Vec<String> {
    let mut flags = fakes.flags();
    flags.extend(["--api-token", TOKEN].iter().chain(extra).map(|s| (*s).to_owned()));
    flags
}

async fn spawn_on(db: TestDatabase, flags: &[String]) -> TestApp {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestApp::spawn_on(db, &flags).await
}

/// A comment on pull request #1's conversation that mentions the handle.
fn pr_comment(comment_id: u64, body: &str) -> Vec<u8> {
    let mut payload: Value = serde_json::from_slice(&comment_payload(comment_id, body)).expect("JSON");
    payload["issue"]["pull_request"] = json!({"url": format!("https://api.github.com/repos/{REPO}/pulls/1")});
    serde_json::to_vec(&payload).expect("JSON")
}

/// V0 says the conversation finished, with a result.
async fn finish(app: &TestApp, conversation: &str, result: &str) {
    let message = json!({"id": 12, "source": "agent", "action": "message", "args": {"content": result}});
    let finished = json!({"id": 14, "source": "environment", "observation": "agent_state_changed", "content": "",
                          "extras": {"agent_state": "finished", "reason": ""}});
    let batch = json!([
        {"method": "POST", "path": format!("sessions/{conversation}/events/12.json"), "content": message.to_string()},
        {"method": "POST", "path": format!("sessions/{conversation}/events/14.json"), "content": finished.to_string()},
    ]);
    assert_eq!(callback(app, CALLBACK_KEY, batch).await.status(), 202);
}

/// The bodies of the comments posted on #1, in order.
async fn comments(fakes: &Fakes) -> Vec<String> {
    fakes
        .requests("POST", "/issues/1/comments")
        .await
        .iter()
        .map(|r| body_of(r)["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every text hookwise wrote: the comments posted, then the edits (the
/// status comment is edited in place, `HOOKWISE_REPLY_STYLE=edit`).
async fn written(fakes: &Fakes) -> Vec<String> {
    let mut texts = comments(fakes).await;
    texts.extend(fakes.edits().await.iter().map(|r| body_of(r)["body"].as_str().unwrap_or_default().to_owned()));
    texts
}

async fn wait_for_comment(fakes: &Fakes, what: &str, starts_with: &str, count: usize) {
    eventually(Duration::from_secs(20), what, || async {
        written(fakes).await.iter().filter(|c| c.starts_with(starts_with)).count() >= count
    })
    .await;
}

/// Waits until `count` texts hookwise wrote contain `text`.
async fn wait_for_text(fakes: &Fakes, what: &str, text: &str, count: usize) {
    eventually(Duration::from_secs(20), what, || async {
        written(fakes).await.iter().filter(|c| c.contains(text)).count() >= count
    })
    .await;
}

/// The first message of each conversation the runtime was asked to start, in order.
async fn starts(fakes: &Fakes) -> Vec<String> {
    fakes
        .requests("POST", "/api/conversations")
        .await
        .iter()
        .map(|r| body_of(r)["initial_user_msg"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every conversation on the API, oldest first.
async fn conversations(app: &TestApp) -> Vec<Value> {
    let response =
        app.http.get(app.url("/api/v1/conversations")).bearer_auth(TOKEN).send().await.expect("the API answers");
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.expect("JSON");
    page["items"].as_array().expect("items").clone()
}

/// `queue_position` of every conversation on the API, oldest first.
async fn queue_positions(app: &TestApp) -> Vec<Value> {
    conversations(app).await.iter().map(|c| c["queue_position"].clone()).collect()
}

/// The V0 runtime stops conversation `conv-{n}` when asked.
async fn stoppable(fakes: &Fakes, conversation: &str) {
    Mock::given(method("POST"))
        .and(path(format!("/api/conversations/{conversation}/stop")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "ok", "conversation_id": conversation})),
        )
        .mount(&fakes.agent)
        .await;
}

/// A comment on #1 by `login`, whose permission GitHub reports as `permission`.
async fn comment_by(fakes: &Fakes, login: &str, permission: &str, comment_id: u64, body: &str) -> Vec<u8> {
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/collaborators/{login}/permission")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"permission": permission})))
        .mount(&fakes.github)
        .await;
    let mut payload: Value = serde_json::from_slice(&pr_comment(comment_id, body)).expect("JSON");
    payload["sender"] = json!({"id": 99, "login": login, "type": "User"});
    serde_json::to_vec(&payload).expect("JSON")
}

/// The stop's answer, once it is in the log.
async fn stop_answer(app: &TestApp) -> StopAnswered {
    app.first_event::<StopAnswered>().await
}

fn count(log: &[hookwise::store::RecordedEvent], event_type: &str) -> usize {
    log.iter().filter(|e| e.event_type == event_type).count()
}

async fn two_requests_on_one_pull_request_run_one_after_the_other(backend: Backend) {
    let fakes = fakes().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = spawn_on(db, &flags(&fakes, &[])).await;
    assert_eq!(app.deliver("issue_comment", "d-first", &pr_comment(9701, "@openhands first")).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.deliver("issue_comment", "d-second", &pr_comment(9702, "@openhands second")).await.status(), 200);

    // Both get their 👀; the second says it waits, with the first's link.
    fakes.wait_for("POST", "/reactions", 2).await;
    wait_for_comment(&fakes, "the second request's notice", "Queued behind", 1).await;
    let notice = comments(&fakes).await.into_iter().find(|c| c.starts_with("Queued behind")).expect("a notice");
    assert!(
        notice.contains("(https://github.com/c/500)") || notice.contains("(https://agent.example/c/conv-1)"),
        "the notice links the running request: {notice}"
    );
    assert_eq!(starts(&fakes).await, vec!["@openhands first"], "the second waits while the first runs");
    eventually(Duration::from_secs(10), "the API shows the second in line", || async {
        queue_positions(&app).await == vec![Value::Null, json!(1)]
    })
    .await;

    // The first ends: its summary, then the second starts.
    finish(&app, "conv-1", "First done.").await;
    fakes.wait_for("POST", "/api/conversations", 2).await;
    assert_eq!(starts(&fakes).await, vec!["@openhands first", "@openhands second"]);
    // The notice is edited into the second's status comment: no comment more.
    wait_for_comment(&fakes, "the second's acknowledgement", "I'm on it!", 2).await;
    finish(&app, "conv-2", "Second done.").await;
    wait_for_text(&fakes, "the second's summary", "Second done.", 1).await;

    let posted = written(&fakes).await;
    assert_eq!(comments(&fakes).await.len(), 2, "the first's status comment and the notice: {posted:?}");
    assert_eq!(posted.iter().filter(|c| c.contains("First done.")).count(), 1, "{posted:?}");
    assert_eq!(posted.iter().filter(|c| c.starts_with("Queued behind")).count(), 1, "one notice: {posted:?}");
    // In the log: the second asked for its conversation only after the first's summary.
    let log = app.log().await;
    let at = |event_type: &str, nth: usize| {
        log.iter().filter(|e| e.event_type == event_type).nth(nth).map(|e| e.position).expect(event_type)
    };
    assert!(at("SummaryPosted", 0) < at("ConversationRequested", 1));
    assert_eq!(log.iter().filter(|e| e.event_type == "ConversationRequested").count(), 2);
    eventually(Duration::from_secs(10), "nobody in line any more", || async {
        queue_positions(&app).await == vec![Value::Null, Value::Null]
    })
    .await;
    app.stop().await;
}

async fn the_line_survives_a_restart(backend: Backend) {
    let fakes = fakes().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let flags = flags(&fakes, &[]);
    let app = spawn_on(db, &flags).await;
    assert_eq!(app.deliver("issue_comment", "d-first", &pr_comment(9711, "@openhands first")).await.status(), 200);
    assert_eq!(app.deliver("issue_comment", "d-second", &pr_comment(9712, "@openhands second")).await.status(), 200);
    wait_for_comment(&fakes, "the second request's notice", "Queued behind", 1).await;
    let db = app.stop().await;

    // A new process on the same database: the second still waits, and starts when the first ends.
    let app = spawn_on(db, &flags).await;
    assert_eq!(starts(&fakes).await, vec!["@openhands first"]);
    // The read model rebuilt from the log shows the same line.
    let rebuilt = app
        .http
        .post(app.url("/api/v1/admin/rebuild/conversations"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(rebuilt.status(), 200);
    eventually(Duration::from_secs(10), "the rebuilt line", || async {
        queue_positions(&app).await == vec![Value::Null, json!(1)]
    })
    .await;
    finish(&app, "conv-1", "First done.").await;
    fakes.wait_for("POST", "/api/conversations", 2).await;
    assert_eq!(starts(&fakes).await, vec!["@openhands first", "@openhands second"]);
    wait_for_comment(&fakes, "the second's acknowledgement", "I'm on it!", 2).await;
    assert_eq!(comments(&fakes).await.iter().filter(|c| c.starts_with("Queued behind")).count(), 1);
    app.stop().await;
}

async fn parallel_starts_both_at_once(backend: Backend) {
    let fakes = fakes().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = spawn_on(db, &flags(&fakes, &["--per-thread", "parallel"])).await;
    assert_eq!(app.deliver("issue_comment", "d-first", &pr_comment(9721, "@openhands first")).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.deliver("issue_comment", "d-second", &pr_comment(9722, "@openhands second")).await.status(), 200);
    // Both start before either ends, and nothing says "queued".
    fakes.wait_for("POST", "/api/conversations", 2).await;
    wait_for_comment(&fakes, "both acknowledgements", "I'm on it!", 2).await;
    assert!(comments(&fakes).await.iter().all(|c| !c.starts_with("Queued behind")));
    eventually(Duration::from_secs(10), "nobody shown waiting", || async {
        queue_positions(&app).await == vec![Value::Null, Value::Null]
    })
    .await;
    app.stop().await;
}

async fn a_writers_stop_stops_the_running_one_and_the_next_starts(backend: Backend) {
    let fakes = fakes().await;
    stoppable(&fakes, "conv-1").await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = spawn_on(db, &flags(&fakes, &[])).await;
    assert_eq!(app.deliver("issue_comment", "d-first", &pr_comment(9731, "@openhands first")).await.status(), 200);
    assert_eq!(app.deliver("issue_comment", "d-second", &pr_comment(9732, "@openhands second")).await.status(), 200);
    wait_for_comment(&fakes, "the second request's notice", "Queued behind", 1).await;

    let stop = pr_comment(9733, "@OpenHands STOP please");
    assert_eq!(app.deliver("issue_comment", "d-stop", &stop).await.status(), 200);
    let calls = fakes.wait_for("POST", "/api/conversations/conv-1/stop", 1).await;
    assert_eq!(calls[0].headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer agent-key"));
    // The first's status comment ends in its final state, exactly.
    wait_for_comment(&fakes, "the first's final word", "**Status:** stopped by @Codertocat.", 1).await;
    let first_trigger = app
        .log()
        .await
        .iter()
        .filter(|e| e.event_type == "TriggerDetected")
        .map(|e| hookwise::events::TriggerDetected::decode(e).expect("decodes"))
        .find(|t| t.comment_id == Some(9731))
        .expect("the first request");
    let summary_command =
        hookwise::process::command_id(first_trigger.trigger_id, hookwise::triggers::Step::PostSummary, 0);
    let final_words: Vec<Value> = fakes
        .edits()
        .await
        .iter()
        .map(|r| body_of(r)["body"].clone())
        .filter(|b| b.as_str().is_some_and(|b| b.contains("stopped by")))
        .collect();
    assert_eq!(
        final_words,
        vec![json!(format!(
            "**Status:** stopped by @Codertocat.\n\n[See the conversation here](https://agent.example/c/conv-1).\n\n\
             <!-- hookwise:{summary_command} -->"
        ))]
    );
    // The line moves on: the second starts.
    fakes.wait_for("POST", "/api/conversations", 2).await;
    assert_eq!(starts(&fakes).await, vec!["@openhands first", "@openhands second"]);
    wait_for_comment(&fakes, "the second's acknowledgement", "I'm on it!", 2).await;

    let answer = stop_answer(&app).await;
    assert_eq!((answer.outcome.as_str(), answer.comment_id), ("stopped", None), "{answer:?}");
    assert_eq!(answer.stopped.len(), 1);
    eventually(Duration::from_secs(10), "the API shows the stop", || async {
        let rows = conversations(&app).await;
        rows.len() == 2
            && rows[0]["status"] == "stopped"
            && rows[0]["stopped_by"] == "Codertocat"
            && rows[0]["summary_posted_at"].is_string()
    })
    .await;
    let first = conversations(&app).await.swap_remove(0);
    assert!(first["stopped_at"].is_string() && first["summary_posted_at"].is_string(), "{first}");
    assert!(first["failed_at"].is_null() && first["finished_at"].is_null(), "a stop is neither: {first}");
    let log = app.log().await;
    assert_eq!(count(&log, "TriggerDetected"), 2, "a stop is no request for the agent");
    assert_eq!(count(&log, "ConversationStopped"), 1);
    assert_eq!(fakes.requests("POST", "/stop").await.len(), 1, "stopped once");
    assert!(comments(&fakes).await.iter().all(|c| !c.starts_with("There is nothing")));
    app.stop().await;
}

async fn a_readers_stop_does_nothing(backend: Backend) {
    let fakes = fakes().await;
    stoppable(&fakes, "conv-1").await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = spawn_on(db, &flags(&fakes, &[])).await;
    assert_eq!(app.deliver("issue_comment", "d-first", &pr_comment(9741, "@openhands first")).await.status(), 200);
    wait_for_comment(&fakes, "the acknowledgement", "I'm on it!", 1).await;

    let stop = comment_by(&fakes, "Reader", "read", 9742, "@openhands stop").await;
    assert_eq!(app.deliver("issue_comment", "d-stop", &stop).await.status(), 200);
    let answer = stop_answer(&app).await;
    assert_eq!((answer.outcome.as_str(), answer.permission.as_str()), ("denied", "read"), "{answer:?}");
    // Nothing stopped, nothing said.
    assert!(fakes.requests("POST", "/stop").await.is_empty());
    assert_eq!(comments(&fakes).await.len(), 1, "only the acknowledgement: {:?}", comments(&fakes).await);
    assert_eq!(count(&app.log().await, "ConversationStopped"), 0);
    eventually(Duration::from_secs(10), "the run still shown running", || async {
        conversations(&app).await.first().is_some_and(|row| row["status"] == "running")
    })
    .await;
    app.stop().await;
}

async fn a_stop_with_nothing_running_gets_one_short_reply(backend: Backend) {
    let fakes = fakes().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = spawn_on(db, &flags(&fakes, &[])).await;
    let stop = pr_comment(9751, "@openhands stop");
    for _ in 0..3 {
        assert_eq!(app.deliver("issue_comment", "d-stop", &stop).await.status(), 200);
    }
    let answer = stop_answer(&app).await;
    assert_eq!(answer.outcome, "nothing_running", "{answer:?}");
    let posted = comments(&fakes).await;
    assert_eq!(posted.len(), 1, "one reply, however often GitHub delivers the stop: {posted:?}");
    assert!(posted[0].starts_with("There is nothing running here to stop."), "{posted:?}");
    assert_eq!(answer.comment_id, Some(500));
    assert!(starts(&fakes).await.is_empty());
    assert_eq!(count(&app.log().await, "TriggerDetected"), 0);
    app.stop().await;
}
