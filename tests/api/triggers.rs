//! From a delivery that asks for the agent to its answer on GitHub, with
//! wiremock standing in for GitHub and for the agent runtime.

use std::time::{Duration, Instant};

use hookwise::events::{
    AcknowledgementPosted, DomainEvent, StepFailed, TriggerAbandoned, TriggerDetected, TriggerRejected,
};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use hookwise::cli::examples::{ExampleKind, ExampleSettings};
use hookwise::triggers::Step;

use crate::helpers::{
    answer_before_the_body, backend_tests, read_whole_log, sign, Backend, TestApp, TestDatabase, TEST_SECRET,
};

backend_tests!(
    a_mention_in_an_issue_comment_goes_from_delivery_to_summary,
    a_label_starts_a_conversation_to_fix_the_issue,
    a_denied_or_bot_sender_starts_nothing,
    a_failed_comment_post_is_retried_into_exactly_one_comment,
    a_rate_limit_is_waited_out_until_its_reset,
    callbacks_need_the_key_and_a_known_conversation,
    a_callback_without_the_key_is_refused_before_its_body_is_read,
    a_restart_between_conversation_and_acknowledgement_acknowledges_once,
    an_inline_comment_is_answered_in_its_review_thread,
    a_comment_created_behind_a_502_is_found_by_its_marker_and_not_posted_again,
    an_unconfigured_agent_or_a_suspended_installation_ends_in_a_rejection,
    an_abandoned_trigger_runs_again_when_an_admin_retries_it,
    pull_request_and_inline_mentions_work_on_the_head_branch,
    a_failed_run_gets_one_suggestion_once_every_run_is_done,
    an_intake_instance_records_and_a_full_instance_acts,
    a_reply_in_a_review_thread_is_answered_in_that_thread,
    the_acknowledgement_is_posted_once_across_a_crash,
    an_agent_ending_in_error_gets_a_short_reply,
);

pub(crate) const REPO: &str = "Codertocat/Hello-World";
pub(crate) const INSTALLATION: u64 = 4242;
pub(crate) const CALLBACK_KEY: &str = "callback-key";

pub(crate) struct Fakes {
    pub(crate) github: MockServer,
    pub(crate) agent: MockServer,
}

impl Fakes {
    /// A GitHub where the App is installed and `permission` is the sender's.
    pub(crate) async fn start(permission: &str) -> Fakes {
        let github = MockServer::start().await;
        let agent = MockServer::start().await;
        let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
        Mock::given(method("POST"))
            .and(path(format!("/app/installations/{INSTALLATION}/access_tokens")))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({"token": "ghs_test", "expires_at": "2099-01-01T00:00:00Z"})),
            )
            .mount(&github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/app/installations/{INSTALLATION}")))
            .respond_with(ok(json!({"id": INSTALLATION, "suspended_at": null})))
            .mount(&github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/collaborators/Codertocat/permission")))
            .respond_with(ok(json!({"permission": permission})))
            .mount(&github)
            .await;
        Mock::given(method("POST"))
            .and(path_regex_reactions())
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 77, "content": "eyes"})))
            .mount(&github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/issues/1")))
            .respond_with(ok(json!({"title": "Spelling error in the README file", "body": "commmit"})))
            .mount(&github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/issues/1/comments")))
            .respond_with(ok(json!([{"id": 1, "body": "an earlier remark", "user": {"login": "someone"}}])))
            .mount(&github)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/conversations"))
            .and(header("authorization", "Bearer agent-key"))
            .respond_with(ok(json!({"status": "ok", "conversation_id": "conv-1"})))
            .mount(&agent)
            .await;
        Mock::given(method("PATCH"))
            .and(wiremock::matchers::path_regex(r"^/repos/[^/]+/[^/]+/(issues|pulls)/comments/\d+$"))
            .respond_with(EditComment)
            .mount(&github)
            .await;
        Fakes { github, agent }
    }

    /// Waits until `count` comments were edited (`PATCH …/comments/{id}`), in order.
    pub(crate) async fn wait_for_edits(&self, count: usize) -> Vec<Request> {
        self.wait_for_edits_long(count, Duration::from_secs(20)).await
    }

    /// [`Fakes::wait_for_edits`] with a limit of its own (a real agent runtime is slower).
    pub(crate) async fn wait_for_edits_long(&self, count: usize, limit: Duration) -> Vec<Request> {
        let started = Instant::now();
        loop {
            let found = self.edits().await;
            if found.len() >= count {
                return found;
            }
            assert!(started.elapsed() < limit, "waited for {count} edits, saw {}", found.len());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The comment edits received so far, in order.
    pub(crate) async fn edits(&self) -> Vec<Request> {
        let all = self.github.received_requests().await.unwrap_or_default();
        all.into_iter().filter(|r| r.method.as_str() == "PATCH" && r.url.path().contains("/comments/")).collect()
    }

    /// The body of the first edit of a comment: a trigger's last word
    /// (`HOOKWISE_REPLY_STYLE=edit`, the default), waited for.
    pub(crate) async fn final_word(&self) -> String {
        let edits = self.wait_for_edits(1).await;
        body_of(&edits[0])["body"].as_str().expect("an edit has a body").to_owned()
    }

    /// Comments are created with ids 500, 501, …
    pub(crate) async fn accept_comments(&self) {
        Mock::given(method("POST"))
            .and(path(format!("/repos/{REPO}/issues/1/comments")))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(json!({"id": 500, "html_url": "https://github.com/c/500"})),
            )
            .mount(&self.github)
            .await;
    }

    pub(crate) fn flags(&self) -> Vec<String> {
        self.flags_with_retry_base(50)
    }

    fn flags_with_retry_base(&self, retry_base_ms: u64) -> Vec<String> {
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-github-app-key.pem");
        [
            "--github-app-id",
            "12345",
            "--github-app-private-key-path",
            key,
            "--github-api-url",
            &self.github.uri(),
            "--agent-runtime",
            "openhands-v0",
            "--agent-api-url",
            &self.agent.uri(),
            "--agent-api-key",
            "agent-key",
            "--agent-conversation-url",
            "https://agent.example/c/{conversation_id}",
            "--agent-callback-secret",
            CALLBACK_KEY,
            "--retry-base-ms",
            &retry_base_ms.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }

    pub(crate) async fn requests(&self, method_name: &str, path_suffix: &str) -> Vec<Request> {
        let mut all = self.github.received_requests().await.unwrap_or_default();
        all.extend(self.agent.received_requests().await.unwrap_or_default());
        all.into_iter().filter(|r| r.method.as_str() == method_name && r.url.path().ends_with(path_suffix)).collect()
    }

    /// Waits until `count` requests of this kind arrived.
    pub(crate) async fn wait_for(&self, method_name: &str, path_suffix: &str, count: usize) -> Vec<Request> {
        self.wait_for_long(method_name, path_suffix, count, Duration::from_secs(20)).await
    }

    /// [`Fakes::wait_for`] with a limit of its own (a real agent runtime is slower).
    pub(crate) async fn wait_for_long(
        &self,
        method_name: &str,
        path_suffix: &str,
        count: usize,
        limit: Duration,
    ) -> Vec<Request> {
        let started = Instant::now();
        loop {
            let found = self.requests(method_name, path_suffix).await;
            if found.len() >= count {
                return found;
            }
            assert!(started.elapsed() < limit, "waited for {count} {method_name} …{path_suffix}, saw {}", found.len());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn path_regex_reactions() -> wiremock::matchers::PathRegexMatcher {
    wiremock::matchers::path_regex(r"/reactions$")
}

pub(crate) async fn spawn(backend: Backend, fakes: &Fakes) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let flags = fakes.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(TestApp::spawn_on(db, &flags).await)
}

pub(crate) fn base_payload() -> Value {
    json!({
        "repository": {"id": 186853002, "full_name": REPO, "name": "Hello-World"},
        "sender": {"id": 21031067, "login": "Codertocat", "type": "User"},
        "installation": {"id": INSTALLATION},
    })
}

pub(crate) fn comment_payload(comment_id: u64, body: &str) -> Vec<u8> {
    let mut payload = base_payload();
    payload["action"] = json!("created");
    payload["issue"] =
        json!({"number": 1, "title": "Spelling error in the README file", "updated_at": "2019-05-15T15:20:21Z"});
    payload["comment"] = json!({"id": comment_id, "body": body});
    serde_json::to_vec(&payload).expect("JSON")
}

pub(crate) fn body_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

pub(crate) async fn callback(app: &TestApp, key: &str, operations: Value) -> reqwest::Response {
    app.http
        .post(app.url("/event-webhook/batch"))
        .header("x-session-api-key", key)
        .json(&operations)
        .send()
        .await
        .expect("callback answered")
}

pub(crate) fn finished_batch(conversation: &str) -> Value {
    let message = json!({"id": 12, "source": "agent", "action": "message", "args": {"content": "I fixed the spelling in README.md."}});
    let finished = json!({"id": 14, "source": "environment", "observation": "agent_state_changed", "content": "", "extras": {"agent_state": "finished", "reason": ""}});
    json!([
        {"method": "POST", "path": format!("sessions/{conversation}/events/12.json"), "content": message.to_string()},
        {"method": "POST", "path": format!("sessions/{conversation}/events/14.json"), "content": finished.to_string()},
        {"method": "POST", "path": format!("sessions/{conversation}/metadata.json"), "content": "{\"title\":\"x\"}"},
    ])
}

async fn a_mention_in_an_issue_comment_goes_from_delivery_to_summary(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    let body = comment_payload(9001, "Hey @openhands, please fix the typo.");
    // Five redeliveries, and the same comment through a second hook.
    for _ in 0..5 {
        assert_eq!(app.deliver("issue_comment", "d-mention", &body).await.status(), 200);
    }
    let other_hook = app
        .http
        .post(app.url("/integration/github/events"))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", "d-mention-hook-2")
        .header("x-github-hook-id", "99")
        .header("x-hub-signature-256", crate::helpers::sign(crate::helpers::TEST_SECRET, &body))
        .body(body.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(other_hook.status(), 200);

    let reactions = fakes.wait_for("POST", "/reactions", 1).await;
    assert_eq!(reactions[0].url.path(), format!("/repos/{REPO}/issues/comments/9001/reactions"));
    assert_eq!(body_of(&reactions[0]), json!({"content": "eyes"}));
    assert_eq!(reactions[0].headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer ghs_test"));

    let started = fakes.wait_for("POST", "/api/conversations", 1).await;
    let request = body_of(&started[0]);
    assert_eq!(request["repository"], REPO);
    assert_eq!(request["git_provider"], "github");
    assert_eq!(request["selected_branch"], Value::Null);
    assert_eq!(request["initial_user_msg"], "Hey @openhands, please fix the typo.");
    let instructions = request["conversation_instructions"].as_str().expect("instructions");
    assert!(instructions.contains("Spelling error in the README file") && instructions.contains("an earlier remark"));

    let comments = fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let ack = body_of(&comments[0])["body"].as_str().expect("a body").to_owned();
    let log = app.log().await;
    let trigger: TriggerDetected = app.first_event().await;
    let started_at = log.iter().find(|e| e.event_type == "ConversationStarted").expect("started").recorded_at();
    let ack_command = hookwise::process::command_id(trigger.trigger_id, Step::PostAcknowledgement, 0);
    // The status comment: "I'm on it", since when the agent runs, the marker.
    assert_eq!(
        ack,
        format!(
            "I'm on it! Codertocat can [track my progress here](https://agent.example/c/conv-1).\n\n\
             **Status:** running since {}-{:02}-{:02} {:02}:{:02} UTC.\n\n<!-- hookwise:{ack_command} -->",
            started_at.year(),
            u8::from(started_at.month()),
            started_at.day(),
            started_at.hour(),
            started_at.minute()
        )
    );

    let answer = callback(&app, CALLBACK_KEY, finished_batch("conv-1")).await;
    assert_eq!(answer.status(), 202);
    let receipt: Value = answer.json().await.expect("JSON");
    assert_eq!(receipt, json!({"accepted": 3, "ignored": 0}));

    // The result is written into that comment: the final state, the result, the link.
    let edits = fakes.wait_for_edits(1).await;
    assert_eq!(edits[0].url.path(), format!("/repos/{REPO}/issues/comments/500"));
    let summary_command = hookwise::process::command_id(trigger.trigger_id, Step::PostSummary, 0);
    assert_eq!(
        body_of(&edits[0]),
        json!({"body": format!(
            "**Status:** finished.\n\nI fixed the spelling in README.md.\n\n\
             [See the whole conversation here](https://agent.example/c/conv-1).\n\n<!-- hookwise:{summary_command} -->"
        )})
    );

    // Settle, then count: one of everything, whatever was redelivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/api/conversations").await.len(), 1);
    assert_eq!(fakes.requests("POST", "/reactions").await.len(), 1);
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "one comment, edited");
    assert_eq!(fakes.edits().await.len(), 1, "edited once");
    let log = app.log().await;
    let detected: Vec<_> = log.iter().filter(|e| e.event_type == TriggerDetected::TYPE).collect();
    assert_eq!(detected.len(), 1);
    let types: Vec<&str> =
        log.iter().filter(|e| e.stream.starts_with("trigger-")).map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "TriggerDetected",
            "PermissionChecked",
            "ReactionAdded",
            "ConversationRequested",
            "ConversationStarted",
            "AcknowledgementPosted",
            "ConversationStatusChanged",
            "SummaryPosted"
        ]
    );
    app.stop().await;
}

/// With `HOOKWISE_REPLY_STYLE=new`: "I'm on it" stays as posted and the result is a comment of its own.
async fn a_label_starts_a_conversation_to_fix_the_issue(backend: Backend) {
    let fakes = Fakes::start("maintain").await;
    fakes.accept_comments().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut flags = fakes.flags();
    flags.extend(["--reply-style".to_owned(), "new".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn_on(db, &flags).await;
    let mut payload = base_payload();
    payload["action"] = json!("labeled");
    payload["label"] = json!({"name": "openhands"});
    payload["issue"] = json!({"number": 1, "title": "Spelling error", "updated_at": "2019-05-15T15:20:21Z"});
    let body = serde_json::to_vec(&payload).expect("JSON");
    assert_eq!(app.deliver("issues", "d-label", &body).await.status(), 200);

    let reactions = fakes.wait_for("POST", "/reactions", 1).await;
    assert_eq!(reactions[0].url.path(), format!("/repos/{REPO}/issues/1/reactions"));
    let started = fakes.wait_for("POST", "/api/conversations", 1).await;
    assert_eq!(body_of(&started[0])["initial_user_msg"], "Please fix issue number #1.");
    assert_eq!(body_of(&started[0])["selected_branch"], Value::Null);
    let acks = fakes.wait_for("POST", "/issues/1/comments", 1).await;
    assert!(body_of(&acks[0])["body"].as_str().is_some_and(|b| b.starts_with("I'm on it! Codertocat can")));

    let answer = callback(&app, CALLBACK_KEY, finished_batch("conv-1")).await;
    assert_eq!(answer.status(), 202);
    let comments = fakes.wait_for("POST", "/issues/1/comments", 2).await;
    let summary = body_of(&comments[1])["body"].as_str().expect("a body").to_owned();
    assert!(summary.starts_with("I fixed the spelling in README.md."), "{summary}");
    assert!(summary.contains("(https://agent.example/c/conv-1)"), "{summary}");
    assert_eq!(body_of(&acks[0])["body"].as_str().map(|b| b.contains("**Status:**")), Some(false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fakes.edits().await.is_empty(), "nothing is edited");
    app.stop().await;
}

async fn a_denied_or_bot_sender_starts_nothing(backend: Backend) {
    let fakes = Fakes::start("read").await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    let denied = comment_payload(9100, "@openhands do it");
    assert_eq!(app.deliver("issue_comment", "d-denied", &denied).await.status(), 200);
    let mut bot: Value = serde_json::from_slice(&comment_payload(9101, "@openhands do it")).expect("JSON");
    bot["sender"] = json!({"id": 1, "login": "renovate[bot]", "type": "Bot"});
    assert_eq!(app.deliver("issue_comment", "d-bot", &serde_json::to_vec(&bot).expect("JSON")).await.status(), 200);

    let rejected: TriggerRejected = app.first_event().await;
    assert_eq!(rejected.reason, "permission_denied");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = app.log().await;
    assert_eq!(log.iter().filter(|e| e.event_type == TriggerDetected::TYPE).count(), 1, "the bot asked for nothing");
    assert!(fakes.requests("POST", "/reactions").await.is_empty());
    assert!(fakes.requests("POST", "/api/conversations").await.is_empty());
    assert!(fakes.requests("POST", "/issues/1/comments").await.is_empty(), "a denial posts no comment");
    app.stop().await;
}

async fn a_failed_comment_post_is_retried_into_exactly_one_comment(backend: Backend) {
    let fakes = Fakes::start("admin").await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/issues/1/comments")))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    let body = comment_payload(9200, "@openhands go");
    assert_eq!(app.deliver("issue_comment", "d-502", &body).await.status(), 200);

    fakes.wait_for("POST", "/issues/1/comments", 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts = fakes.requests("POST", "/issues/1/comments").await;
    assert_eq!(posts.len(), 3, "two failures, then one comment");
    let log = app.log().await;
    let failures: Vec<StepFailed> = log
        .iter()
        .filter(|e| e.event_type == StepFailed::TYPE)
        .map(|e| StepFailed::decode(e).expect("decodes"))
        .collect();
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().all(|f| f.step == "post_acknowledgement"));
    assert_eq!(log.iter().filter(|e| e.event_type == "AcknowledgementPosted").count(), 1);

    // The executor's and GitHub's metrics saw it (process-wide counters: at least this test's share).
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let sample = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        sample("hookwise_executor_attempts_total{step=\"post_acknowledgement\",outcome=\"retry\"}") >= 2.0,
        "{metrics}"
    );
    assert!(sample("hookwise_github_api_calls_total{status=\"502\"}") >= 2.0);
    assert!(metrics.contains("hookwise_outbox_pending"));
    app.stop().await;
}

async fn a_rate_limit_is_waited_out_until_its_reset(backend: Backend) {
    let fakes = Fakes::start("write").await;
    let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 2;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/collaborators/Codertocat/permission")))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({"message": "API rate limit exceeded"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(app.deliver("issue_comment", "d-limit", &comment_payload(9300, "@openhands go")).await.status(), 200);

    let checks = fakes.wait_for("GET", "/permission", 2).await;
    let log = app.log().await;
    let failed = log.iter().find(|e| e.event_type == StepFailed::TYPE).map(|e| StepFailed::decode(e).expect("decodes"));
    let failed = failed.expect("the rate-limited attempt is recorded");
    assert!(failed.error.contains("403"), "{}", failed.error);
    assert!(failed.retry_at_micros >= ((reset - 1) * 1_000_000) as i64, "the retry waits for the reset");
    drop(checks);
    fakes.wait_for("POST", "/reactions", 1).await;
    app.stop().await;
}

async fn callbacks_need_the_key_and_a_known_conversation(backend: Backend) {
    let fakes = Fakes::start("write").await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    let before = app.log().await.len();

    let wrong = callback(&app, "not-the-key", finished_batch("conv-1")).await;
    assert_eq!(wrong.status(), 401);
    let answer: Value = wrong.json().await.expect("JSON error");
    assert_eq!(answer["error"], "unauthorized");
    let missing =
        app.http.post(app.url("/event-webhook/batch")).json(&finished_batch("conv-1")).send().await.expect("answer");
    assert_eq!(missing.status(), 401);

    let unknown = callback(&app, CALLBACK_KEY, finished_batch("never-started")).await;
    assert_eq!(unknown.status(), 202);
    assert_eq!(unknown.json::<Value>().await.expect("JSON"), json!({"accepted": 0, "ignored": 3}));

    let malformed = app
        .http
        .post(app.url("/event-webhook/batch"))
        .header("x-session-api-key", CALLBACK_KEY)
        .body("{\"not\": \"an array\"}")
        .send()
        .await
        .expect("answer");
    assert_eq!(malformed.status(), 400);
    assert_eq!(malformed.json::<Value>().await.expect("JSON")["error"], "invalid_batch");

    assert_eq!(app.log().await.len(), before, "nothing was stored");
    app.stop().await;
}

/// Unauthenticated callers cannot make hookwise buffer a body: the key is
/// checked on the head, before the (here 512 MiB, never sent) body is read.
async fn a_callback_without_the_key_is_refused_before_its_body_is_read(backend: Backend) {
    let fakes = Fakes::start("write").await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    let declared = 512 * 1024 * 1024;
    let wrong = ["x-session-api-key: not-the-key".to_owned()];
    assert_eq!(answer_before_the_body(&app, "/event-webhook/batch", &wrong, declared).await, Some(401));
    assert_eq!(answer_before_the_body(&app, "/event-webhook/batch", &[], declared).await, Some(401));
    // Not the agent-server runtime here: refused at the head as well.
    let events = "/agent-server/events/0b0c5e5e0a6a4d0e8f3b2a1c9d8e7f60";
    assert_eq!(answer_before_the_body(&app, events, &wrong, declared).await, Some(503));
    // With the key, a declared length over the cap is refused at once.
    let key = [format!("x-session-api-key: {CALLBACK_KEY}")];
    assert_eq!(answer_before_the_body(&app, "/event-webhook/batch", &key, declared).await, Some(413));
    app.stop().await;
}

async fn a_restart_between_conversation_and_acknowledgement_acknowledges_once(backend: Backend) {
    let fakes = Fakes::start("write").await;
    // The first attempt at the acknowledgement fails; the retry waits long
    // enough (a 2 s base) for the server to be stopped before it.
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/issues/1/comments")))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    fakes.accept_comments().await;
    let flags = fakes.flags_with_retry_base(2000);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = TestApp::spawn_on(db, &flags).await;
    assert_eq!(app.deliver("issue_comment", "d-restart", &comment_payload(9400, "@openhands go")).await.status(), 200);
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let db = app.stop().await;
    let log_before = read_types(&db).await;
    assert!(log_before.contains(&"ConversationStarted".to_owned()));
    assert!(!log_before.contains(&"AcknowledgementPosted".to_owned()), "stopped before the acknowledgement");

    // The restarted server picks the acknowledgement up from the outbox.
    let app = TestApp::spawn_on(db, &flags).await;
    let started = Instant::now();
    while !app.log().await.iter().any(|e| e.event_type == "AcknowledgementPosted") {
        assert!(started.elapsed() < Duration::from_secs(30), "the acknowledgement was posted after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = app.log().await;
    assert_eq!(log.iter().filter(|e| e.event_type == "AcknowledgementPosted").count(), 1);
    assert_eq!(fakes.requests("POST", "/api/conversations").await.len(), 1, "the conversation was started once");
    assert_eq!(
        fakes.requests("POST", "/issues/1/comments").await.len(),
        2,
        "one failed post, then exactly one comment"
    );
    app.stop().await;
}

async fn read_types(db: &TestDatabase) -> Vec<String> {
    let store = db.open_store().await;
    let types = crate::helpers::read_whole_log(store.as_ref()).await.into_iter().map(|e| e.event_type).collect();
    store.close().await;
    types
}

async fn an_inline_comment_is_answered_in_its_review_thread(backend: Backend) {
    let fakes = Fakes::start("write").await;
    let replies = format!("/repos/{REPO}/pulls/1/comments/9500/replies");
    Mock::given(method("POST"))
        .and(path(replies.as_str()))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": 700, "html_url": "https://github.com/r/700"})),
        )
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    let mut payload = base_payload();
    payload["action"] = json!("created");
    payload["pull_request"] = json!({
        "number": 1,
        "title": "Update the README with new information",
        "head": {"ref": "changes", "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821"},
    });
    payload["comment"] = json!({"id": 9500, "body": "@openhands rename this", "path": "README.md", "line": 3});
    let body = serde_json::to_vec(&payload).expect("JSON");
    assert_eq!(app.deliver("pull_request_review_comment", "d-inline", &body).await.status(), 200);

    let reactions = fakes.wait_for("POST", "/reactions", 1).await;
    assert_eq!(reactions[0].url.path(), format!("/repos/{REPO}/pulls/comments/9500/reactions"));
    assert_eq!(body_of(&reactions[0]), json!({"content": "eyes"}));
    let started = fakes.wait_for("POST", "/api/conversations", 1).await;
    let request = body_of(&started[0]);
    assert_eq!(request["selected_branch"], "changes", "the agent works on the pull request's head");
    assert_eq!(request["initial_user_msg"], "@openhands rename this");

    let acks = fakes.wait_for("POST", "/replies", 1).await;
    assert_eq!(acks[0].url.path(), replies);
    let ack = body_of(&acks[0])["body"].as_str().expect("a body").to_owned();
    assert!(ack.starts_with("I'm on it! Codertocat can [track my progress here](https://agent.example/c/conv-1)."));

    // The agent ends in error: the reply in the thread is edited to name the state and reason.
    let failed = json!({"id": 20, "source": "environment", "observation": "agent_state_changed", "content": "",
        "extras": {"agent_state": "error", "reason": "the sandbox died"}});
    let batch = json!([{"method": "POST", "path": "sessions/conv-1/events/20.json", "content": failed.to_string()}]);
    let answer = callback(&app, CALLBACK_KEY, batch).await;
    assert_eq!(answer.status(), 202);
    assert_eq!(answer.json::<Value>().await.expect("JSON"), json!({"accepted": 1, "ignored": 0}));
    let edits = fakes.wait_for_edits(1).await;
    assert_eq!(edits[0].url.path(), format!("/repos/{REPO}/pulls/comments/700"));
    let reply = body_of(&edits[0])["body"].as_str().expect("a body").to_owned();
    assert!(reply.starts_with("**Status:** failed.\n\n"), "{reply}");
    assert!(reply.contains("`error`") && reply.contains("the sandbox died"), "{reply}");
    assert_eq!(fakes.requests("POST", "/replies").await.len(), 1, "one reply in the thread, edited");
    assert!(reply.contains("(https://agent.example/c/conv-1)"), "{reply}");
    assert!(fakes.requests("POST", "/issues/1/comments").await.is_empty(), "nothing outside the thread");
    app.stop().await;
}

/// Answers comment posts 502 the first time although the comment was
/// created, as a GitHub whose answer was lost would; lists what was created.
/// The body of the first comment edit, waited for up to `limit`.
pub(crate) async fn wait_for_final_word(fakes: &Fakes, limit: Duration) -> String {
    let edits = fakes.wait_for_edits_long(1, limit).await;
    body_of(&edits[0])["body"].as_str().expect("an edit has a body").to_owned()
}

/// The first comment edit whose body contains `text`, waited for up to `limit`.
pub(crate) async fn wait_for_edit_containing(fakes: &Fakes, text: &str, limit: Duration) -> Request {
    let started = Instant::now();
    loop {
        let edits = fakes.edits().await;
        if let Some(edit) = edits.into_iter().find(|e| body_of(e)["body"].as_str().is_some_and(|b| b.contains(text))) {
            return edit;
        }
        assert!(started.elapsed() < limit, "no comment was edited to contain {text:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GitHub's answer to an edit: the comment, with the id of its path.
pub(crate) struct EditComment;

impl wiremock::Respond for EditComment {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id: u64 = request.url.path().rsplit('/').next().and_then(|id| id.parse().ok()).unwrap_or(0);
        let body = body_of(request)["body"].clone();
        ResponseTemplate::new(200)
            .set_body_json(json!({"id": id, "body": body, "html_url": format!("https://github.com/c/{id}")}))
    }
}

#[derive(Clone, Default)]
struct LossyComments {
    created: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

struct PostComment(LossyComments);
struct ListComments(LossyComments);

impl wiremock::Respond for PostComment {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = body_of(request)["body"].as_str().unwrap_or_default().to_owned();
        let mut created = self.0.created.lock().expect("lock");
        created.push(body);
        if created.len() == 1 {
            return ResponseTemplate::new(502);
        }
        let id = 600 + created.len() as u64;
        ResponseTemplate::new(201).set_body_json(json!({"id": id, "html_url": format!("https://github.com/c/{id}")}))
    }
}

impl wiremock::Respond for ListComments {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let created = self.0.created.lock().expect("lock");
        let comments: Vec<Value> =
            created.iter().enumerate().map(|(i, body)| json!({"id": 601 + i as u64, "body": body})).collect();
        ResponseTemplate::new(200).set_body_json(comments)
    }
}

async fn a_comment_created_behind_a_502_is_found_by_its_marker_and_not_posted_again(backend: Backend) {
    let fakes = Fakes::start("write").await;
    let comments = LossyComments::default();
    let comments_path = format!("/repos/{REPO}/issues/1/comments");
    Mock::given(method("POST"))
        .and(path(comments_path.as_str()))
        .respond_with(PostComment(comments.clone()))
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    Mock::given(method("GET"))
        .and(path(comments_path.as_str()))
        .respond_with(ListComments(comments.clone()))
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(app.deliver("issue_comment", "d-lost", &comment_payload(9600, "@openhands go")).await.status(), 200);

    let acknowledged: AcknowledgementPosted = app.first_event().await;
    assert_eq!(acknowledged.comment_id, 601, "the comment the lost answer created is the acknowledgement");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "posted once, found after the 502");
    assert_eq!(comments.created.lock().expect("lock").len(), 1);
    app.stop().await;
}

/// Waits for the first `TriggerRejected` in the log.
async fn an_unconfigured_agent_or_a_suspended_installation_ends_in_a_rejection(backend: Backend) {
    // No agent runtime configured.
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let flags = fakes.flags();
    let mut without_agent: Vec<&str> = Vec::new();
    let mut skip_value = false;
    for flag in &flags {
        if skip_value {
            skip_value = false;
        } else if flag == "--agent-api-url" {
            skip_value = true;
        } else {
            without_agent.push(flag);
        }
    }
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = TestApp::spawn_on(db, &without_agent).await;
    assert_eq!(app.deliver("issue_comment", "d-no-agent", &comment_payload(9700, "@openhands go")).await.status(), 200);
    let rejected: TriggerRejected = app.first_event().await;
    assert_eq!(rejected.reason, "agent_not_configured");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fakes.requests("POST", "/reactions").await.is_empty());
    assert!(fakes.requests("POST", "/issues/1/comments").await.is_empty());
    app.stop().await;

    // The App's installation is suspended.
    let fakes = Fakes::start("write").await;
    Mock::given(method("GET"))
        .and(path(format!("/app/installations/{INSTALLATION}")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": INSTALLATION, "suspended_at": "2026-01-01T00:00:00Z"})),
        )
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(
        app.deliver("issue_comment", "d-suspended", &comment_payload(9701, "@openhands go")).await.status(),
        200
    );
    let rejected: TriggerRejected = app.first_event().await;
    assert_eq!(rejected.reason, "installation_suspended");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The permission is asked beside the installation (both at once); its
    // answer is ignored for a suspended installation: nothing is done there.
    assert!(fakes.requests("POST", "/reactions").await.is_empty(), "no 👀 on a suspended installation");
    assert!(fakes.requests("POST", "/api/conversations").await.is_empty());
    app.stop().await;
}

async fn an_abandoned_trigger_runs_again_when_an_admin_retries_it(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    // The runtime fails both attempts the trigger gets, then recovers.
    Mock::given(method("POST"))
        .and(path("/api/conversations"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&fakes.agent)
        .await;
    let mut flags = fakes.flags();
    flags.extend(["--retry-max-attempts", "2", "--api-token", "admin-token"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = TestApp::spawn_on(db, &flags).await;
    assert_eq!(app.deliver("issue_comment", "d-abandon", &comment_payload(9800, "@openhands go")).await.status(), 200);

    let abandoned: TriggerAbandoned = app.first_event().await;
    assert_eq!(abandoned.step, "start_conversation");
    assert_eq!(abandoned.attempts, 2);
    // Said where it was asked, once: what failed and how to retry.
    let reports = fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let report = body_of(&reports[0])["body"].as_str().expect("a body").to_owned();
    let report_command = hookwise::process::command_id(abandoned.trigger_id, Step::ReportAbandonment, 0);
    assert_eq!(
        report,
        format!(
            "Sorry, I gave up: I could not start the agent (2 attempts; the last failed with: \
             the agent runtime answered 500). An operator can retry it: \
             `POST /api/v1/admin/triggers/{}/retry`.\n\n<!-- hookwise:{report_command} -->",
            abandoned.trigger_id
        )
    );
    let reported: hookwise::events::AbandonmentReported = app.first_event().await;
    assert_eq!((reported.comment_id, reported.edited, reported.step.as_str()), (500, false, "start_conversation"));

    // Decided from the trigger's stream: a retry asked the moment the
    // abandonment is in the log is accepted, and two asked at once record one.
    let retry_url = app.url(&format!("/api/v1/admin/triggers/{}/retry", abandoned.trigger_id));
    let retry = || app.http.post(&retry_url).bearer_auth("admin-token").send();
    let (first, second) = tokio::join!(retry(), retry());
    let mut statuses = [first.expect("answer").status().as_u16(), second.expect("answer").status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "one retry per abandonment");
    assert_eq!(retry().await.expect("answer").status(), 409, "asked again: still one retry");

    // The report becomes the status comment: "I'm on it" is written into it.
    let acks = fakes.wait_for_edits(1).await;
    assert_eq!(acks[0].url.path(), format!("/repos/{REPO}/issues/comments/500"));
    assert!(body_of(&acks[0])["body"].as_str().is_some_and(|b| b.starts_with("I'm on it!")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/api/conversations").await.len(), 3, "two failures, then one conversation");
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "one comment in all");
    assert_eq!(app.first_event::<AcknowledgementPosted>().await.comment_id, 500);
    let log = app.log().await;
    assert_eq!(log.iter().filter(|e| e.event_type == "ConversationStarted").count(), 1);
    assert_eq!(log.iter().filter(|e| e.event_type == "TriggerRetried").count(), 1);
    app.stop().await;
}

async fn pull_request_and_inline_mentions_work_on_the_head_branch(backend: Backend) {
    let fakes = Fakes::start("write").await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/pulls/1")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"head": {"ref": "fix-typo", "sha": "abc"}})))
        .mount(&fakes.github)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/repos/{REPO}/pulls/1/comments/9600/replies")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 601})))
        .mount(&fakes.github)
        .await;
    fakes.accept_comments().await;
    // Both requests are on pull request #1 and run side by side.
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut flags = fakes.flags();
    flags.extend(["--per-thread".to_owned(), "parallel".to_owned()]);
    let app = TestApp::spawn_on(db, &flags.iter().map(String::as_str).collect::<Vec<_>>()).await;

    // A mention on a pull request's conversation: the head branch comes from the API.
    let mut on_pr: Value = serde_json::from_slice(&comment_payload(9500, "@openhands fix the tests")).expect("JSON");
    on_pr["issue"]["pull_request"] = json!({"url": format!("https://api.github.com/repos/{REPO}/pulls/1")});
    assert_eq!(app.deliver("issue_comment", "d-pr", &serde_json::to_vec(&on_pr).expect("JSON")).await.status(), 200);
    let started = fakes.wait_for("POST", "/api/conversations", 1).await;
    assert_eq!(body_of(&started[0])["selected_branch"], "fix-typo");
    let comments = fakes.wait_for("POST", "/issues/1/comments", 1).await;
    assert!(body_of(&comments[0])["body"].as_str().is_some_and(|b| b.starts_with("I'm on it!")));

    // An inline review comment: 👀 on the review comment, the reply in its thread.
    let mut inline = base_payload();
    inline["action"] = json!("created");
    inline["pull_request"] = json!({"number": 1, "title": "Fix", "head": {"ref": "fix-typo", "sha": "abc"}});
    inline["comment"] = json!({"id": 9600, "body": "@openhands rename this", "path": "src/lib.rs", "line": 7});
    let body = serde_json::to_vec(&inline).expect("JSON");
    assert_eq!(app.deliver("pull_request_review_comment", "d-inline", &body).await.status(), 200);
    let reactions = fakes.wait_for("POST", "/reactions", 2).await;
    assert!(reactions.iter().any(|r| r.url.path() == format!("/repos/{REPO}/pulls/comments/9600/reactions")));
    let started = fakes.wait_for("POST", "/api/conversations", 2).await;
    let request = body_of(&started[1]);
    assert_eq!(request["selected_branch"], "fix-typo");
    assert_eq!(request["initial_user_msg"], "@openhands rename this");
    let instructions = request["conversation_instructions"].as_str().expect("instructions");
    assert!(instructions.contains("src/lib.rs, line 7"), "{instructions}");
    let replies = fakes.wait_for("POST", "/comments/9600/replies", 1).await;
    assert!(body_of(&replies[0])["body"].as_str().is_some_and(|b| b.starts_with("I'm on it! Codertocat")));
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "the inline reply went to the thread");
    app.stop().await;
}

async fn a_failed_run_gets_one_suggestion_once_every_run_is_done(backend: Backend) {
    let fakes = Fakes::start("write").await;
    let runs = |second_status: &str| {
        json!({"workflow_runs": [
            {"name": "CI", "status": "completed", "conclusion": "failure"},
            {"name": "Lint", "status": second_status, "conclusion": if second_status == "completed" { json!("success") } else { Value::Null }},
        ]})
    };
    // The first look finds a run still going; the next finds all done.
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/actions/runs")))
        .respond_with(ResponseTemplate::new(200).set_body_json(runs("in_progress")))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/actions/runs")))
        .respond_with(ResponseTemplate::new(200).set_body_json(runs("completed")))
        .mount(&fakes.github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/pulls/1")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"head": {"ref": "fix"}, "mergeable": false})))
        .mount(&fakes.github)
        .await;
    fakes.accept_comments().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut flags = fakes.flags();
    flags.extend(["--proactive".to_owned(), "true".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn_on(db, &flags).await;

    let mut run = base_payload();
    run["action"] = json!("completed");
    run["workflow_run"] = json!({"name": "CI", "head_sha": "abc", "head_branch": "fix", "conclusion": "failure",
        "pull_requests": [{"number": 1, "head": {"ref": "fix", "sha": "abc"}}]});
    let body = serde_json::to_vec(&run).expect("JSON");
    // Two failing workflows of the same commit report separately: one suggestion.
    assert_eq!(app.deliver("workflow_run", "d-run-1", &body).await.status(), 200);
    assert_eq!(app.deliver("workflow_run", "d-run-2", &body).await.status(), 200);

    let comments = fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let suggestion = body_of(&comments[0])["body"].as_str().expect("a body").to_owned();
    assert!(suggestion.contains("- CI\n") && !suggestion.contains("- Lint"), "{suggestion}");
    assert!(suggestion.contains("merge conflicts"), "{suggestion}");
    assert!(suggestion.contains("@openhands"), "{suggestion}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1);
    assert!(fakes.requests("POST", "/api/conversations").await.is_empty(), "a suggestion starts nothing");
    assert!(fakes.requests("GET", "/actions/runs").await.len() >= 2, "it waited for every run to finish");
    app.stop().await;
}

/// An `intake` instance only records; an `all` instance on the same database
/// does the background work for both.
async fn an_intake_instance_records_and_a_full_instance_acts(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut flags = fakes.flags();
    flags.extend(["--role".to_owned(), "intake".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let intake = TestApp::spawn_on(db, &flags).await;
    assert_eq!(intake.deliver("issue_comment", "d-role", &comment_payload(9700, "@openhands go")).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!intake.log().await.iter().any(|e| e.event_type == TriggerDetected::TYPE), "intake only records");
    assert!(fakes.requests("POST", "/reactions").await.is_empty());
    let db = intake.stop().await;

    let flags = fakes.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let worker = TestApp::spawn_on(db, &flags).await;
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
    assert_eq!(fakes.requests("POST", "/api/conversations").await.len(), 1);
    worker.stop().await;
}

/// The `send --example` payload of `kind`, for this test's installation.
fn example(kind: ExampleKind) -> Vec<u8> {
    kind.payload(&ExampleSettings {
        label: "openhands".into(),
        mention: "@openhands".into(),
        installation_id: INSTALLATION,
    })
}

/// Pull request #2 of the corpus: head `changes` at `ec26c3e…`.
const PR_HEAD_SHA: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";

impl Fakes {
    /// GitHub creates issue #1's comments (the acknowledgement among them)
    /// but answers only after `delay`.
    pub(crate) async fn answer_issue_comments_after(&self, delay: Duration) {
        Mock::given(method("POST"))
            .and(path(format!("/repos/{REPO}/issues/1/comments")))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({"id": 500, "html_url": "https://github.com/c/500"}))
                    .set_delay(delay),
            )
            .mount(&self.github)
            .await;
    }

    async fn pull_request_two(&self, mergeable: Value) {
        let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/pulls/2")))
            .respond_with(ok(
                json!({"number": 2, "head": {"ref": "changes", "sha": PR_HEAD_SHA}, "mergeable": mergeable}),
            ))
            .mount(&self.github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/issues/2")))
            .respond_with(ok(
                json!({"title": "Update the README with new information.", "body": "This is a pretty simple change"}),
            ))
            .mount(&self.github)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/repos/{REPO}/issues/2/comments")))
            .respond_with(ok(json!([])))
            .mount(&self.github)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/repos/{REPO}/issues/2/comments")))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(json!({"id": 600, "html_url": "https://github.com/c/600"})),
            )
            .mount(&self.github)
            .await;
    }
}

async fn a_reply_in_a_review_thread_is_answered_in_that_thread(backend: Backend) {
    let fakes = Fakes::start("admin").await;
    fakes.pull_request_two(Value::Null).await;
    // The mention is itself a reply: answers go to the thread's first comment (GitHub takes no replies to replies).
    let replies = format!("/repos/{REPO}/pulls/2/comments/284312000/replies");
    Mock::given(method("POST"))
        .and(path(replies.clone()))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": 700, "html_url": "https://github.com/r/700"})),
        )
        .mount(&fakes.github)
        .await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    let mut body: Value = serde_json::from_slice(&example(ExampleKind::InlineComment)).expect("JSON");
    body["comment"]["in_reply_to_id"] = json!(284312000u64);
    let body = serde_json::to_vec(&body).expect("JSON");
    assert_eq!(app.deliver("pull_request_review_comment", "d-inline", &body).await.status(), 200);

    let reactions = fakes.wait_for("POST", "/reactions", 1).await;
    assert_eq!(reactions[0].url.path(), format!("/repos/{REPO}/pulls/comments/284312630/reactions"));
    let started = fakes.wait_for("POST", "/api/conversations", 1).await;
    let request = body_of(&started[0]);
    assert_eq!(request["selected_branch"], "changes");
    let instructions = request["conversation_instructions"].as_str().expect("instructions");
    assert!(instructions.contains("README.md") && instructions.contains("265"), "{instructions}");

    let acks = fakes.wait_for("POST", "/replies", 1).await;
    assert_eq!(acks[0].url.path(), replies);
    assert!(body_of(&acks[0])["body"].as_str().expect("body").starts_with("I'm on it! Codertocat can"));
    assert_eq!(callback(&app, CALLBACK_KEY, finished_batch("conv-1")).await.status(), 202);
    // The result is written into the reply in the thread.
    let edits = fakes.wait_for_edits(1).await;
    assert_eq!(edits[0].url.path(), format!("/repos/{REPO}/pulls/comments/700"));
    let result = body_of(&edits[0])["body"].as_str().expect("body").to_owned();
    assert!(result.starts_with("**Status:** finished.\n\nI fixed the spelling in README.md."), "{result}");
    assert_eq!(fakes.requests("POST", "/replies").await.len(), 1);
    assert!(
        fakes.requests("POST", "/issues/2/comments").await.is_empty(),
        "no top-level comment for an inline request"
    );
    app.stop().await;
}

/// Starts the real binary against `fakes`; returns it with its base URL.
pub(crate) fn start_binary(database_url: &str, fakes: &Fakes) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("serve")
        .args(fakes.flags())
        // A crashed executor's claim is taken over after half a second.
        .args(["--claim-lease-ms", "500"])
        .env("DATABASE_URL", database_url)
        .env_remove("EVENTSTORE_URL")
        .env("GITHUB_APP_WEBHOOK_SECRET", TEST_SECRET)
        .env("HOOKWISE_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the hookwise binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).expect("reading the listening line");
    let base = line.trim().strip_prefix("hookwise listening on ").expect("the listening line").to_owned();
    (child, base)
}

async fn the_acknowledgement_is_posted_once_across_a_crash(backend: Backend) {
    let fakes = Fakes::start("write").await;
    // GitHub creates the comment, but its answer comes too late: hookwise dies first.
    fakes.answer_issue_comments_after(Duration::from_secs(3)).await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let (mut child, base) = start_binary(&db.url, &fakes);
    let body = comment_payload(9400, "@openhands fix it");
    let delivered = reqwest::Client::new()
        .post(format!("{base}/integration/github/events"))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", "d-crash")
        .header("x-hub-signature-256", sign(TEST_SECRET, &body))
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(delivered.status(), 200);

    let posted = fakes.wait_for("POST", "/issues/1/comments", 1).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the child");
    let ack_body = body_of(&posted[0])["body"].as_str().expect("body").to_owned();
    assert!(ack_body.contains("<!-- hookwise:"), "{ack_body}");
    {
        let store = db.open_store().await;
        let log = read_whole_log(store.as_ref()).await;
        assert!(log.iter().any(|e| e.event_type == "ConversationStarted"));
        assert!(!log.iter().any(|e| e.event_type == "AcknowledgementPosted"), "killed before the answer came");
        store.close().await;
    }

    // GitHub now lists the comment that was created.
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/issues/1/comments")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 1, "body": "an earlier remark", "user": {"login": "someone"}},
            {"id": 500, "body": ack_body, "user": {"login": "hookwise[bot]"}, "html_url": "https://github.com/c/500"},
        ])))
        .with_priority(1)
        .mount(&fakes.github)
        .await;
    let listed_before = fakes.requests("GET", "/issues/1/comments").await.len();
    let (mut child, _) = start_binary(&db.url, &fakes);
    fakes.wait_for("GET", "/issues/1/comments", listed_before + 1).await;
    // Wait for the executor to record what it found (reading the log beside the running server).
    let started = Instant::now();
    let store = db.open_store().await;
    let log = loop {
        let log = read_whole_log(store.as_ref()).await;
        if log.iter().any(|e| e.event_type == "AcknowledgementPosted") || started.elapsed() > Duration::from_secs(20) {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the child");
    store.close().await;
    let acks: Vec<_> = log.iter().filter(|e| e.event_type == "AcknowledgementPosted").collect();
    assert_eq!(acks.len(), 1, "the acknowledgement is recorded once");
    let ack: Value = serde_json::from_slice(&acks[0].data).expect("JSON");
    assert_eq!(ack["comment_id"], 500, "the comment found by its marker: {ack}");
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "posted once");
    assert_eq!(fakes.requests("POST", "/api/conversations").await.len(), 1, "one conversation");
}

async fn an_agent_ending_in_error_gets_a_short_reply(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(app.deliver("issue_comment", "d-error", &comment_payload(9500, "@openhands go")).await.status(), 200);
    fakes.wait_for("POST", "/issues/1/comments", 1).await;

    let state = |id: u32, agent_state: &str, reason: &str| {
        let event = json!({"id": id, "source": "environment", "observation": "agent_state_changed", "content": "",
                           "extras": {"agent_state": agent_state, "reason": reason}});
        json!({"method": "POST", "path": format!("sessions/conv-1/events/{id}.json"), "content": event.to_string()})
    };
    // Running is not an end; error is.
    let running = callback(&app, CALLBACK_KEY, json!([state(3, "running", "")])).await;
    assert_eq!(running.status(), 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "no reply while the agent runs");
    let failed = callback(&app, CALLBACK_KEY, json!([state(9, "error", "no LLM API key")])).await;
    assert_eq!(failed.status(), 202);

    // The status comment is edited to its final state, naming the agent's state and reason.
    let edits = fakes.wait_for_edits(1).await;
    assert_eq!(edits[0].url.path(), format!("/repos/{REPO}/issues/comments/500"));
    let trigger: TriggerDetected = app.first_event().await;
    let command = hookwise::process::command_id(trigger.trigger_id, Step::PostSummary, 0);
    assert_eq!(
        body_of(&edits[0])["body"],
        format!(
            "**Status:** failed.\n\nSorry, I stopped before finishing (the agent ended in state `error`: \
             no LLM API key). [See the conversation here](https://agent.example/c/conv-1).\n\n<!-- hookwise:{command} -->"
        )
    );
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1, "no second comment");
    app.stop().await;
}
