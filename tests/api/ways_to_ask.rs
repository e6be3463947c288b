//! The ways of asking beyond a new comment and an issue label, end to end:
//! a review body, the label on a pull request, a comment edited to mention
//! the handle, an assignment to the App's bot user. Each redelivered and
//! seen through a second hook is one conversation, with its 👀 and its
//! replies where the kind says.

use std::time::Duration;

use hookwise::events::{DomainEvent, TriggerDetected};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{backend_tests, eventually, sign, Backend, TestApp, TestDatabase, TEST_SECRET};
use crate::query_api::{get, TOKEN};
use crate::triggers::{base_payload, body_of, callback, finished_batch, Fakes, CALLBACK_KEY, REPO};

backend_tests!(
    a_review_body_that_names_the_handle_is_answered_on_the_pull_request,
    the_label_on_a_pull_request_works_on_its_head_branch,
    a_comment_edited_to_name_the_handle_is_answered_once,
    an_assignment_to_the_bot_from_get_app_asks_and_one_to_a_person_does_not,
    hookwise_bot_login_stands_in_for_get_app_and_a_failing_get_app_blocks_nothing,
);

const BOT: &str = "hookwise-test[bot]";

async fn spawn(backend: Backend, fakes: &Fakes, extra: &[&str]) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let mut flags = fakes.flags();
    flags.extend(["--api-token", TOKEN].iter().chain(extra).map(|s| (*s).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(TestApp::spawn_on(db, &flags).await)
}

/// `GET /app`: the App's slug.
async fn serve_app_slug(fakes: &Fakes) {
    Mock::given(method("GET"))
        .and(path("/app"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 12345, "slug": "hookwise-test"})))
        .mount(&fakes.github)
        .await;
}

/// The head branch of pull request 1, for kinds whose webhook does not carry it.
async fn serve_pull_request(fakes: &Fakes) {
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/pulls/1")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"head": {"ref": "fix-typo", "sha": "abc"}})))
        .mount(&fakes.github)
        .await;
}

fn pull_request() -> Value {
    json!({"number": 1, "title": "Fix the typo", "updated_at": "2019-05-15T15:20:21Z",
           "head": {"ref": "fix-typo", "sha": "abc"}})
}

/// Delivers `body` five times as one delivery and once through a second hook
/// as another, as GitHub does on redelivery and with two hooks installed.
async fn deliver_six_times(app: &TestApp, event: &str, body: &[u8]) {
    for _ in 0..5 {
        assert_eq!(app.deliver(event, "d-ask", body).await.status(), 200);
    }
    let second_hook = app.deliver_through_hook("99", event, "d-ask-hook-2", body, &sign(TEST_SECRET, body)).await;
    assert_eq!(second_hook.status(), 200);
}

/// Where the request is expected to be answered.
struct Expected<'a> {
    kind: &'a str,
    reaction_path: String,
    initial_message: &'a str,
    branch: Value,
}

/// From the deliveries to the summary: one 👀, one conversation, the
/// acknowledgement and the summary on the pull request's or issue's
/// conversation, and one trigger of `expected.kind` in the read model.
async fn answered_once(app: &TestApp, fakes: &Fakes, expected: Expected<'_>) {
    let reactions = fakes.wait_for("POST", "/reactions", 1).await;
    assert_eq!(reactions[0].url.path(), expected.reaction_path);
    assert_eq!(body_of(&reactions[0]), json!({"content": "eyes"}));
    let started = fakes.wait_for("POST", "/api/conversations", 1).await;
    let request = body_of(&started[0]);
    assert_eq!(request["initial_user_msg"], expected.initial_message);
    assert_eq!(request["selected_branch"], expected.branch);
    let acks = fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let ack = body_of(&acks[0])["body"].as_str().expect("a body").to_owned();
    assert!(
        ack.starts_with("I'm on it! Codertocat can [track my progress here](https://agent.example/c/conv-1)."),
        "{ack}"
    );

    let answer = callback(app, CALLBACK_KEY, finished_batch("conv-1")).await;
    assert_eq!(answer.status(), 202);
    let summary = fakes.final_word().await;
    assert!(summary.starts_with("**Status:** finished.\n\nI fixed the spelling in README.md."), "{summary}");
    assert_eq!(fakes.edits().await[0].url.path(), format!("/repos/{REPO}/issues/comments/500"));

    // The read model has it finished, under its kind; then count once settled.
    let listed = format!("/api/v1/conversations?kind={}", expected.kind);
    eventually(Duration::from_secs(20), &format!("one finished {} conversation", expected.kind), || async {
        let (_, page) = get(app, &listed).await;
        page["items"].as_array().is_some_and(|items| items.len() == 1 && items[0]["status"] == "finished")
    })
    .await;
    let (_, stats) = get(app, "/api/v1/stats/triggers").await;
    assert_eq!(stats["by_kind_and_status"], json!([{"kind": expected.kind, "status": "finished", "count": 1}]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fakes.requests("POST", "/api/conversations").await.len(), 1);
    assert_eq!(fakes.requests("POST", "/reactions").await.len(), 1);
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 1);
    assert_eq!(fakes.edits().await.len(), 1);
    assert_eq!(fakes.requests("POST", "/replies").await.len(), 0, "nothing in a review thread");
    let detected = app.log().await.into_iter().filter(|e| e.event_type == TriggerDetected::TYPE).count();
    assert_eq!(detected, 1);
}

async fn a_review_body_that_names_the_handle_is_answered_on_the_pull_request(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes, &[]).await else { return };
    let mut payload = base_payload();
    payload["action"] = json!("submitted");
    payload["pull_request"] = pull_request();
    payload["review"] =
        json!({"id": 237895671, "body": "Nearly there. @openhands please fix the typo.", "state": "commented"});
    deliver_six_times(&app, "pull_request_review", &serde_json::to_vec(&payload).expect("JSON")).await;
    // GitHub has no reactions on a review: the 👀 goes on the pull request.
    let expected = Expected {
        kind: "pr_review",
        reaction_path: format!("/repos/{REPO}/issues/1/reactions"),
        initial_message: "Nearly there. @openhands please fix the typo.",
        branch: json!("fix-typo"),
    };
    answered_once(&app, &fakes, expected).await;
    app.stop().await;
}

async fn the_label_on_a_pull_request_works_on_its_head_branch(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes, &[]).await else { return };
    let mut payload = base_payload();
    payload["action"] = json!("labeled");
    payload["label"] = json!({"name": "openhands"});
    payload["pull_request"] = pull_request();
    deliver_six_times(&app, "pull_request", &serde_json::to_vec(&payload).expect("JSON")).await;
    let expected = Expected {
        kind: "pr_label",
        reaction_path: format!("/repos/{REPO}/issues/1/reactions"),
        initial_message: "Please work on pull request #1: address its review comments and failing checks.",
        branch: json!("fix-typo"),
    };
    answered_once(&app, &fakes, expected).await;
    app.stop().await;
}

async fn a_comment_edited_to_name_the_handle_is_answered_once(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    let Some(app) = spawn(backend, &fakes, &[]).await else { return };
    let edit = |before: &str, after: &str, updated_at: &str| {
        let mut payload = base_payload();
        payload["action"] = json!("edited");
        payload["issue"] = json!({"number": 1, "title": "Spelling error in the README file"});
        payload["comment"] = json!({"id": 9100, "body": after, "updated_at": updated_at});
        payload["changes"] = json!({"body": {"from": before}});
        serde_json::to_vec(&payload).expect("JSON")
    };
    deliver_six_times(&app, "issue_comment", &edit("Please fix the typo.", "@openhands please fix the typo.", "t1"))
        .await;
    // A later edit of a comment that already asked asks nothing more.
    let again = edit("@openhands please fix the typo.", "@openhands please fix the typo, thanks.", "t2");
    assert_eq!(app.deliver("issue_comment", "d-edit-2", &again).await.status(), 200);
    // The 👀 on the comment itself, which GitHub allows.
    let expected = Expected {
        kind: "edited_issue_comment",
        reaction_path: format!("/repos/{REPO}/issues/comments/9100/reactions"),
        initial_message: "@openhands please fix the typo.",
        branch: Value::Null,
    };
    answered_once(&app, &fakes, expected).await;
    app.stop().await;
}

fn assignment(login: &str, updated_at: &str) -> Vec<u8> {
    let mut payload = base_payload();
    payload["action"] = json!("assigned");
    payload["issue"] = json!({"number": 1, "title": "Spelling error in the README file", "updated_at": updated_at});
    payload["assignee"] = json!({"id": 1, "login": login, "type": "Bot"});
    serde_json::to_vec(&payload).expect("JSON")
}

async fn an_assignment_to_the_bot_from_get_app_asks_and_one_to_a_person_does_not(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    serve_app_slug(&fakes).await;
    let Some(app) = spawn(backend, &fakes, &[]).await else { return };
    assert_eq!(fakes.requests("GET", "/app").await.len(), 1, "the bot login is fetched once, at start");
    for (login, delivery) in [("Codertocat", "d-person"), ("dependabot[bot]", "d-other-bot")] {
        assert_eq!(app.deliver("issues", delivery, &assignment(login, "t0")).await.status(), 200);
    }
    deliver_six_times(&app, "issues", &assignment(BOT, "t1")).await;
    let expected = Expected {
        kind: "issue_assigned",
        reaction_path: format!("/repos/{REPO}/issues/1/reactions"),
        initial_message: "Please fix issue number #1.",
        branch: Value::Null,
    };
    answered_once(&app, &fakes, expected).await;
    assert_eq!(fakes.requests("GET", "/app").await.len(), 1);
    app.stop().await;
}

async fn hookwise_bot_login_stands_in_for_get_app_and_a_failing_get_app_blocks_nothing(backend: Backend) {
    // GET /app fails: the service starts, assignments ask nothing, the rest works.
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    serve_pull_request(&fakes).await;
    Mock::given(method("GET")).and(path("/app")).respond_with(ResponseTemplate::new(500)).mount(&fakes.github).await;
    let Some(app) = spawn(backend, &fakes, &[]).await else { return };
    assert_eq!(app.deliver("issues", "d-assign", &assignment(BOT, "t1")).await.status(), 200);
    // Deliveries are classified in log order: once the later mention is
    // detected, the assignment before it has been classified too.
    let mention = crate::triggers::comment_payload(9200, "@openhands fix it");
    assert_eq!(app.deliver("issue_comment", "d-mention", &mention).await.status(), 200);
    eventually(Duration::from_secs(20), "the mention is detected", || async {
        app.log().await.iter().any(|e| e.event_type == TriggerDetected::TYPE)
    })
    .await;
    let kinds: Vec<String> = app
        .log()
        .await
        .iter()
        .filter(|e| e.event_type == TriggerDetected::TYPE)
        .filter_map(|e| TriggerDetected::decode(e).ok().map(|t| t.kind.as_str().to_owned()))
        .collect();
    assert_eq!(kinds, vec!["issue_comment"], "no assignment trigger without the bot login");
    app.stop().await;

    // HOOKWISE_BOT_LOGIN: no GET /app, and a PR assigned to that login asks.
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    serve_pull_request(&fakes).await;
    let Some(app) = spawn(backend, &fakes, &["--bot-login", "custom-login[bot]"]).await else { return };
    let mut payload = base_payload();
    payload["action"] = json!("assigned");
    payload["pull_request"] = pull_request();
    payload["assignee"] = json!({"id": 2, "login": "Custom-Login[bot]", "type": "Bot"});
    deliver_six_times(&app, "pull_request", &serde_json::to_vec(&payload).expect("JSON")).await;
    let expected = Expected {
        kind: "pr_assigned",
        reaction_path: format!("/repos/{REPO}/issues/1/reactions"),
        initial_message: "Please work on pull request #1: address its review comments and failing checks.",
        branch: json!("fix-typo"),
    };
    answered_once(&app, &fakes, expected).await;
    assert_eq!(fakes.requests("GET", "/app").await.len(), 0, "HOOKWISE_BOT_LOGIN is used as it is");
    app.stop().await;
}
