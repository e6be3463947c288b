//! How much the log grows for what an agent runtime posts: each message is
//! stored once (state changes do not copy it), the result copied into the
//! event that ends a run is capped, batches over their caps are refused
//! whole, and the reply on GitHub carries the result cut to one comment.

use std::time::Duration;

use hookwise::commands::receive_agent_batch::{MAX_BATCH_OPERATIONS, MAX_BATCH_STATE_CHANGES};
use hookwise::events::{
    ConversationStarted, ConversationStatusChanged, DomainEvent, SummaryPosted, MAX_AGENT_TEXT_CHARS, TRUNCATION_MARKER,
};
use hookwise::store::RecordedEvent;
use serde_json::{json, Value};
use uuid::Uuid;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::agent_server::{agent_server_flags, post_events, set_flag, spawn_app};
use crate::helpers::agent_server::AGENT_SERVER_KEY;
use crate::helpers::{backend_tests, eventually, Backend, TestApp};
use crate::triggers::{callback, comment_payload, spawn, Fakes, CALLBACK_KEY};

backend_tests!(
    a_v0_batch_of_one_large_message_and_many_states_grows_the_log_by_about_its_size,
    v0_batches_over_their_caps_are_refused_and_store_nothing,
    an_agent_server_result_is_stored_once_and_copied_capped,
);

/// GitHub's limit on a comment's body, in characters.
const COMMENT_MAX_CHARS: usize = 65_536;

/// What the log holds, in bytes: each event's data and payload, stream, type and id.
fn stored_bytes(log: &[RecordedEvent]) -> usize {
    log.iter()
        .map(|e| e.data.len() + e.payload.as_ref().map_or(0, |p| p.len()) + e.stream.len() + e.event_type.len() + 16)
        .sum()
}

fn count_of<E: DomainEvent>(log: &[RecordedEvent]) -> usize {
    log.iter().filter(|e| e.event_type == E::TYPE).count()
}

/// About 1 MiB of text, in two-byte characters (so a cut must find a boundary).
fn large_message() -> String {
    format!("I fixed the typo.{}", "é".repeat(512 * 1024))
}

fn v0_state(conversation: &str, id: usize, agent_state: &str) -> Value {
    let event = json!({"id": id, "source": "environment", "observation": "agent_state_changed", "content": "",
                       "extras": {"agent_state": agent_state, "reason": ""}});
    json!({"method": "POST", "path": format!("sessions/{conversation}/events/{id}.json"), "content": event.to_string()})
}

/// The probe's case: one 1 MiB message and 100 state changes in one batch
/// grew the log by ~160× the batch (every state change copied the message).
async fn a_v0_batch_of_one_large_message_and_many_states_grows_the_log_by_about_its_size(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(
        app.deliver("issue_comment", "d-growth", &comment_payload(9100, "@openhands fix it")).await.status(),
        200
    );
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let before = stored_bytes(&app.log().await);

    let message = large_message();
    let said = json!({"id": 12, "source": "agent", "action": "message", "args": {"content": message}});
    let mut operations =
        vec![json!({"method": "POST", "path": "sessions/conv-1/events/12.json", "content": said.to_string()})];
    operations.extend((13..112).map(|id| v0_state("conv-1", id, "running")));
    operations.push(v0_state("conv-1", 112, "finished"));
    let batch = Value::Array(operations);
    let body_len = serde_json::to_vec(&batch).expect("JSON").len();
    let answer = callback(&app, CALLBACK_KEY, batch).await;
    assert_eq!(answer.status(), 202);

    // Everything recorded: the 100 state changes and the summary.
    eventually(Duration::from_secs(40), "100 state changes and a summary", || async {
        let log = app.log().await;
        count_of::<ConversationStatusChanged>(&log) == 100 && count_of::<SummaryPosted>(&log) == 1
    })
    .await;
    let growth = stored_bytes(&app.log().await) - before;
    eprintln!("V0: a {body_len}-byte batch grew the log by {growth} bytes ({:.2}×)", growth as f64 / body_len as f64);
    assert!(growth <= 3 * body_len, "a {body_len}-byte batch grew the log by {growth} bytes");

    // The reply still carries the agent's message, cut to fit one comment.
    let summary = fakes.final_word().await;
    assert!(summary.chars().count() <= COMMENT_MAX_CHARS, "{} characters", summary.chars().count());
    assert!(summary.starts_with("**Status:** finished.\n\nI fixed the typo.éé"), "{}", &summary[..40]);
    assert!(summary.contains(&format!("{TRUNCATION_MARKER}\n\n[See the whole conversation here]")));
    assert!(summary.contains("(https://agent.example/c/conv-1)"));
    app.stop().await;
}

async fn v0_batches_over_their_caps_are_refused_and_store_nothing(backend: Backend) {
    let fakes = Fakes::start("write").await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    let sql = hookwise::sql::SqlDb::connect(&app.db.url).await.expect("SQL");
    sql.write(vec![hookwise::process::map_conversation("conv-cap", Uuid::new_v4())]).await.expect("mapped");
    let before = app.log().await.len();

    let write = json!({"method": "POST", "path": "sessions/conv-cap/metadata.json", "content": "{}"});
    let too_many_operations = Value::Array(vec![write; MAX_BATCH_OPERATIONS + 1]);
    let too_many_states =
        Value::Array((0..=MAX_BATCH_STATE_CHANGES).map(|id| v0_state("conv-cap", id, "running")).collect());
    for batch in [too_many_operations, too_many_states] {
        let answer = callback(&app, CALLBACK_KEY, batch).await;
        assert_eq!(answer.status(), 413);
        let error: Value = answer.json().await.expect("a JSON error");
        assert_eq!(error["error"], "batch_too_large", "{error}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains("nothing was stored")), "{error}");
    }
    assert_eq!(app.log().await.len(), before, "nothing was stored");
    app.stop().await;
}

/// hookwise with the agent-server runtime, the agent server faked on
/// `fakes.agent`: the workspace is prepared (its clone credential uploaded)
/// and the conversation started,
/// and asked, it is still running (its end comes by webhook).
async fn spawn_with_fake_agent_server(backend: Backend, fakes: &Fakes) -> Option<TestApp> {
    let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    Mock::given(method("POST"))
        .and(path("/api/bash/execute_bash_command"))
        .respond_with(ok(json!({"exit_code": 0, "stdout": "hookwise:cloned"})))
        .mount(&fakes.agent)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/file/upload"))
        .respond_with(ok(json!({"success": true})))
        .mount(&fakes.agent)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/conversations"))
        .respond_with(ok(json!({"id": "started"})))
        .mount(&fakes.agent)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/api/conversations/[0-9a-f-]+$"))
        .respond_with(ok(json!({"execution_status": "running"})))
        .mount(&fakes.agent)
        .await;
    let mut flags = agent_server_flags(fakes, None);
    set_flag(&mut flags, "--agent-api-url", &fakes.agent.uri());
    set_flag(&mut flags, "--agent-llm-model", "openai/fake");
    set_flag(&mut flags, "--agent-llm-api-key", "sk-fake");
    set_flag(&mut flags, "--agent-workspace-root", "/tmp/hookwise-fake-workspaces");
    spawn_app(backend, &flags).await
}

/// The agent server's events are stored once each; the result is copied
/// once, into the event that ends the run, and capped there (it was copied
/// whole: a 1 MiB result grew the log by twice its size).
async fn an_agent_server_result_is_stored_once_and_copied_capped(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn_with_fake_agent_server(backend, &fakes).await else { return };
    assert_eq!(
        app.deliver("issue_comment", "d-as-growth", &comment_payload(9200, "@openhands go")).await.status(),
        200
    );
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let conversation = app.first_event::<ConversationStarted>().await.conversation_id;
    let before = stored_bytes(&app.log().await);

    let message = large_message();
    let mut events = vec![json!({"kind": "ActionEvent", "id": "finish-1", "source": "agent", "tool_name": "finish",
                                 "action": {"kind": "FinishAction", "message": message}})];
    let update = |n: usize, status: &str| json!({"kind": "ConversationStateUpdateEvent", "id": format!("state-{n}"), "key": "execution_status", "value": status});
    events.extend((0..99).map(|n| update(n, "running")));
    events.push(update(99, "finished"));
    let body = serde_json::to_vec(&events).expect("JSON");
    let body_len = body.len();
    let answer = post_events(&app, Some(AGENT_SERVER_KEY), &conversation, body).await;
    assert_eq!(answer.status(), 200);

    eventually(Duration::from_secs(40), "the run's end and its summary", || async {
        let log = app.log().await;
        count_of::<ConversationStatusChanged>(&log) == 1 && count_of::<SummaryPosted>(&log) == 1
    })
    .await;
    let log = app.log().await;
    let growth = stored_bytes(&log) - before;
    eprintln!(
        "agent server: a {body_len}-byte batch grew the log by {growth} bytes ({:.2}×)",
        growth as f64 / body_len as f64
    );
    assert!(growth * 2 <= 3 * body_len, "a {body_len}-byte batch grew the log by {growth} bytes");
    let ended = log.iter().find(|e| e.event_type == ConversationStatusChanged::TYPE).expect("the end");
    let ended = ConversationStatusChanged::decode(ended).expect("decodes");
    let result = ended.last_message.expect("the result");
    assert_eq!(result.chars().count(), MAX_AGENT_TEXT_CHARS);
    assert!(result.starts_with("I fixed the typo.éé") && result.ends_with(TRUNCATION_MARKER));

    let summary = fakes.final_word().await;
    assert!(summary.chars().count() <= COMMENT_MAX_CHARS, "{} characters", summary.chars().count());
    assert!(summary.starts_with("**Status:** finished.\n\nI fixed the typo.éé"));
    assert!(summary.contains(&format!("{TRUNCATION_MARKER}\n\n[See the whole conversation here]")));
    app.stop().await;
}
