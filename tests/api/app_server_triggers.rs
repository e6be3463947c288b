//! Triggers run on the V1 App Server (`AGENT_RUNTIME=openhands`, the
//! default), against the stand-in App Server and wiremock for GitHub: from
//! the delivery to the summary, one conversation per trigger whatever GitHub
//! redelivers or the App Server's start does, and every end of a run
//! answered with its own reply.

use std::time::Duration;

use hookwise::events::{ConversationStarted, SummaryPosted};
use uuid::Uuid;

use crate::helpers::app_server::{End, Script, StandInAppServer, StartFault};
use crate::helpers::{backend_tests, sign, Backend, TestApp, TestDatabase, TEST_SECRET};
use crate::triggers::{comment_payload, Fakes};

backend_tests!(
    a_mention_runs_on_the_app_server_from_delivery_to_summary,
    every_end_of_an_app_server_run_gets_its_reply,
    a_lost_failed_or_late_start_answer_still_makes_one_conversation,
);

const COMMENTS: &str = "/issues/1/comments";

/// GitHub's flags from the V0 tests' fakes, with the App Server as the runtime.
fn flags(fakes: &Fakes, app_server: &StandInAppServer, extra: &[&str]) -> Vec<String> {
    let mut flags = Vec::new();
    let mut v0 = fakes.flags().into_iter();
    while let Some(flag) = v0.next() {
        if flag.starts_with("--agent-") {
            v0.next();
        } else {
            flags.push(flag);
        }
    }
    let runtime = [
        "--agent-runtime",
        "openhands",
        "--agent-api-url",
        &app_server.url,
        "--agent-api-key",
        &app_server.key,
        "--agent-poll-interval",
        "20ms",
        "--agent-request-timeout",
        "2s",
    ];
    flags.extend(runtime.iter().chain(extra).map(|s| (*s).to_owned()));
    flags
}

async fn spawn(backend: Backend, fakes: &Fakes, app_server: &StandInAppServer, extra: &[&str]) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let flags = flags(fakes, app_server, extra);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(TestApp::spawn_on(db, &flags).await)
}

fn body(request: &wiremock::Request) -> String {
    let json: serde_json::Value = serde_json::from_slice(&request.body).expect("a JSON body");
    json["body"].as_str().unwrap_or_default().to_owned()
}

async fn a_mention_runs_on_the_app_server_from_delivery_to_summary(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let app_server = StandInAppServer::start(Script::default()).await;
    let Some(app) = spawn(backend, &fakes, &app_server, &[]).await else { return };
    let payload = comment_payload(9100, "@openhands fix the typo");
    assert_eq!(app.deliver("issue_comment", "d-v1", &payload).await.status(), 200);

    let comments = fakes.wait_for("POST", COMMENTS, 1).await;
    let summary = fakes.final_word().await;
    let started: ConversationStarted = app.first_event().await;
    let conversation = Uuid::parse_str(&started.conversation_id).expect("hookwise's own id");
    let hex = conversation.simple();
    assert_eq!(
        started.conversation_url,
        format!("{}/conversations/{hex}", app_server.url),
        "the id as the App Server shows it"
    );
    let ack = body(&comments[0]);
    assert!(ack.starts_with("I'm on it!") && ack.contains(&started.conversation_url), "{ack}");
    assert!(
        summary.starts_with("**Status:** finished.\n\nFixed it: see the PR."),
        "the finish action's message: {summary}"
    );
    assert!(fakes.requests("POST", "/reactions").await.len() == 1, "one 👀");
    let posted: SummaryPosted = app.first_event().await;
    assert_eq!(posted.outcome, "finished");
    let start = &app_server.start_bodies()[0];
    assert_eq!(start["trigger"], "resolver");
    assert_eq!(start["selected_repository"], crate::triggers::REPO);
    assert!(start["initial_message"]["content"][0]["text"].as_str().is_some_and(|t| t.contains("fix the typo")));

    // Redelivered five times, and through a second hook: still one of each.
    for _ in 0..5 {
        assert_eq!(app.deliver("issue_comment", "d-v1", &payload).await.status(), 200);
    }
    let signature = sign(TEST_SECRET, &payload);
    let other_hook = app.deliver_through_hook("43", "issue_comment", "d-v1-b", &payload, &signature).await;
    assert_eq!(other_hook.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app_server.started_total(), 1);
    assert_eq!(app_server.started(conversation), 1);
    assert_eq!(fakes.requests("POST", COMMENTS).await.len(), 1);
    assert_eq!(fakes.edits().await.len(), 1);
    app.stop().await;
}

async fn every_end_of_an_app_server_run_gets_its_reply(backend: Backend) {
    // What the run ended in, and the status line the status comment ends with.
    let cases: Vec<(Script, &str, &str)> = vec![
        (Script { end: End::Stuck, ..Script::default() }, "state `stuck`", "stuck"),
        (
            Script { end: End::Error { code: "LLMError".into(), detail: "quota".into() }, ..Script::default() },
            "state `error`",
            "failed",
        ),
        (
            Script { start_task_error: Some("no sandbox".into()), ..Script::default() },
            "state `start_failed`: no sandbox",
            "failed",
        ),
        (Script { sandbox_status: Some("MISSING"), ..Script::default() }, "state `sandbox_missing`", "failed"),
        (
            Script {
                end: End::Finished { finish_message: None, agent_message: Some("All done.".into()) },
                ..Script::default()
            },
            "All done.",
            "finished",
        ),
    ];
    for (script, expected, line) in cases {
        let fakes = Fakes::start("write").await;
        fakes.accept_comments().await;
        let app_server = StandInAppServer::start(script).await;
        let Some(app) = spawn(backend, &fakes, &app_server, &[]).await else { return };
        assert_eq!(app.deliver("issue_comment", "d-end", &comment_payload(9200, "@openhands go")).await.status(), 200);
        let reply = fakes.final_word().await;
        assert!(reply.starts_with(&format!("**Status:** {line}.\n\n")), "expected {line:?} first in {reply}");
        assert!(reply.contains(expected), "expected {expected:?} in {reply}");
        assert_eq!(fakes.requests("POST", COMMENTS).await.len(), 1, "{expected}: one comment, edited");
        assert_eq!(app_server.started_total(), 1, "{expected}");
        app.stop().await;
    }
}

async fn a_lost_failed_or_late_start_answer_still_makes_one_conversation(backend: Backend) {
    let faults = [
        vec![StartFault::AnswerLost],
        vec![StartFault::Slow(Duration::from_secs(4))],
        vec![StartFault::Unavailable, StartFault::AnswerLost],
    ];
    for fault in faults {
        let fakes = Fakes::start("write").await;
        fakes.accept_comments().await;
        let app_server = StandInAppServer::start(Script { start_faults: fault.clone(), ..Script::default() }).await;
        let Some(app) = spawn(backend, &fakes, &app_server, &[]).await else { return };
        assert_eq!(app.deliver("issue_comment", "d-lost", &comment_payload(9300, "@openhands go")).await.status(), 200);
        let summary = fakes.final_word().await;
        assert!(summary.starts_with("**Status:** finished.\n\nFixed it"), "{fault:?}: {summary}");
        assert_eq!(app_server.started_total(), 1, "{fault:?}: one conversation");
        app.stop().await;
    }
}
