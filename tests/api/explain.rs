//! `explain`: why a delivery did or did not ask for the agent, from the same
//! classification the process manager uses — pure over the corpus and the
//! held-back cases, then through `GET /api/v1/deliveries/{id}/explanation`
//! and `hookwise explain`.

use std::process::Command;
use std::time::Duration;

use hookwise::commands::receive_webhook::{webhook_received, DeliveryHeaders};
use hookwise::events::{SecretSlot, TriggerRejected};
use hookwise::triggers::classify::{classify, explain, TriggerRules, TriggerSwitch};
use serde_json::{json, Value};

use crate::helpers::{backend_tests, corpus_files, eventually, payload_examples, Backend, TestApp, TestDatabase};
use crate::query_api::TOKEN;
use crate::triggers::{base_payload, comment_payload, Fakes};

backend_tests!(the_explanation_route_names_the_rule_the_reason_and_the_triggers_fate);

const BOT: &str = "hookwise-app[bot]";

fn rules() -> TriggerRules {
    TriggerRules { proactive: true, ..TriggerRules::default() }
}

fn rules_with_bot() -> TriggerRules {
    TriggerRules { bot_login: Some(BOT.into()), ..rules() }
}

/// The way that reads the delivery and its code (`None`: it asks), or
/// `None` when no way reads it. Checks on the way that `classify` is
/// `explain`'s first match.
fn deciding(event: &str, payload: &Value, rules: &TriggerRules) -> Option<(TriggerSwitch, Option<&'static str>)> {
    let body = serde_json::to_vec(payload).expect("serialisable");
    let headers = DeliveryHeaders { event, delivery_id: "d-1", hook_id: "1", signature: "sha256=x" };
    let received = webhook_received(&headers, SecretSlot::Current, &body).expect("a JSON object");
    let verdicts = explain(&received, &body, "delivery-d-1", 7, rules);
    assert_eq!(verdicts.len(), TriggerSwitch::ALL.len());
    let first = verdicts.iter().find_map(|(_, v)| v.as_ref().ok()).cloned();
    assert_eq!(classify(&received, &body, "delivery-d-1", 7, rules), first, "classify is explain's first match");
    let reading: Vec<_> = verdicts
        .iter()
        .filter(|(_, v)| v.as_ref().err().is_none_or(|why| why.code() != "event_not_a_trigger"))
        .collect();
    assert!(reading.len() <= 1, "one way reads a delivery at most: {reading:?}");
    reading.first().map(|(way, verdict)| (*way, verdict.as_ref().err().map(|why| why.code())))
}

#[test]
fn every_corpus_payload_gets_the_specific_reason_it_does_not_ask() {
    let Some(dir) = payload_examples() else { return };
    let mut read = 0;
    for (event, file) in corpus_files(&dir) {
        let payload: Value = serde_json::from_slice(&std::fs::read(&file).expect("a corpus file")).expect("JSON");
        let action = payload["action"].as_str().unwrap_or("");
        for (rules, with_bot) in [(rules(), false), (rules_with_bot(), true)] {
            let expected = match (event.as_str(), action) {
                ("issue_comment" | "pull_request_review_comment", "created" | "edited") => Some("no_mention"),
                ("issues" | "pull_request", "labeled") => Some("other_label"),
                ("issues" | "pull_request", "assigned") if with_bot => Some("not_assigned_to_bot"),
                ("issues" | "pull_request", "assigned") => Some("bot_login_unknown"),
                ("pull_request_review", "submitted") => Some("no_text"),
                ("workflow_run", "completed") => Some("run_not_failed"),
                _ => None,
            };
            let got = deciding(&event, &payload, &rules);
            assert_eq!(got.map(|(_, code)| code), expected.map(Some), "{}", file.display());
            read += usize::from(got.is_some());
        }
    }
    assert!(read > 20, "the corpus has deliveries some way reads ({read})");
}

fn comment(body: &str) -> Value {
    let mut payload = base_payload();
    payload["action"] = json!("created");
    payload["issue"] = json!({"number": 1, "title": "t", "updated_at": "2019-05-15T15:20:21Z"});
    payload["comment"] = json!({"id": 9, "body": body});
    payload
}

fn edited(before: Option<&str>, after: &str) -> Value {
    let mut payload = comment(after);
    payload["action"] = json!("edited");
    if let Some(before) = before {
        payload["changes"] = json!({"body": {"from": before}});
    }
    payload
}

fn labeled(name: &str) -> Value {
    let mut payload = base_payload();
    payload["action"] = json!("labeled");
    payload["label"] = json!({"name": name});
    payload["issue"] = json!({"number": 1, "title": "t", "updated_at": "2019-05-15T15:20:21Z"});
    payload
}

fn failed_run(on_pull_request: bool) -> Value {
    let mut payload = base_payload();
    payload["action"] = json!("completed");
    let pulls = if on_pull_request { json!([{"number": 5, "head": {"ref": "fix", "sha": "abc"}}]) } else { json!([]) };
    payload["workflow_run"] =
        json!({"name": "CI", "head_sha": "abc", "head_branch": "fix", "conclusion": "failure", "pull_requests": pulls});
    payload
}

fn set(mut payload: Value, pointer: &str, value: Value) -> Value {
    match payload.pointer_mut(pointer) {
        Some(slot) => *slot = value,
        None => panic!("no {pointer}"),
    }
    payload
}

#[test]
fn each_held_back_case_gets_its_own_reason() {
    let off = |switch| {
        let mut rules = rules_with_bot();
        rules.enabled.remove(&switch);
        rules
    };
    let mut on_pr = labeled("openhands");
    on_pr["issue"]["pull_request"] = json!({"url": "https://api.github.com/repos/o/r/pulls/1"});
    let mut assigned = base_payload();
    assigned["action"] = json!("assigned");
    assigned["issue"] = json!({"number": 1, "title": "t"});
    assigned["assignee"] = json!({"login": "octocat", "type": "User"});
    let mut review = base_payload();
    review["action"] = json!("submitted");
    review["pull_request"] = json!({"number": 1, "head": {"ref": "b", "sha": "s"}});
    review["review"] = json!({"id": 3, "body": "Looks good"});
    let mut no_comment = comment("@openhands go");
    no_comment.as_object_mut().expect("object").remove("comment");
    let mut no_installation = comment("@openhands go");
    no_installation.as_object_mut().expect("object").remove("installation");

    let cases: Vec<(&str, &str, Value, TriggerRules, Option<&str>)> = vec![
        ("asks", "issue_comment", comment("@openhands fix it"), rules(), None),
        ("the label in other case", "issues", labeled("OpenHands"), rules(), Some("label_differs_in_case")),
        ("another label", "issues", labeled("openhands-later"), rules(), Some("other_label")),
        ("the label on a PR's issue", "issues", on_pr, rules(), Some("pull_request_event_asks")),
        (
            "the handle inside a word",
            "issue_comment",
            comment("ask @openhands-agent"),
            rules(),
            Some("handle_part_of_word"),
        ),
        (
            "the handle after a word",
            "issue_comment",
            comment("x@openhands please"),
            rules(),
            Some("handle_part_of_word"),
        ),
        (
            "the handle in an email",
            "issue_comment",
            comment("mail user@openhands.com"),
            rules(),
            Some("handle_in_email"),
        ),
        ("no handle at all", "issue_comment", comment("please fix"), rules(), Some("no_mention")),
        ("a zero-width split handle", "issue_comment", comment("@open\u{200B}hands fix"), rules(), Some("no_mention")),
        (
            "a bot sender by type",
            "issue_comment",
            set(comment("@openhands go"), "/sender/type", json!("Bot")),
            rules(),
            Some("bot_sender"),
        ),
        (
            "the App itself",
            "issue_comment",
            set(comment("@openhands go"), "/sender/login", json!(BOT)),
            rules(),
            Some("bot_sender"),
        ),
        (
            "hookwise's own comment",
            "issue_comment",
            comment("@openhands <!-- hookwise:1 -->"),
            rules(),
            Some("hookwise_comment"),
        ),
        (
            "an edit that already mentioned",
            "issue_comment",
            edited(Some("@OpenHands fix"), "@openhands fix it"),
            rules(),
            Some("edit_already_mentioned"),
        ),
        (
            "an edit without a text change",
            "issue_comment",
            edited(None, "@openhands fix it"),
            rules(),
            Some("edit_changed_no_text"),
        ),
        ("an edit that brought the mention", "issue_comment", edited(Some("fix"), "@openhands fix"), rules(), None),
        (
            "mentions switched off",
            "issue_comment",
            comment("@openhands go"),
            off(TriggerSwitch::Mention),
            Some("switched_off"),
        ),
        (
            "a failed run, proactive off",
            "workflow_run",
            failed_run(true),
            TriggerRules::default(),
            Some("proactive_off"),
        ),
        ("a failed run on no pull request", "workflow_run", failed_run(false), rules(), Some("run_on_no_pull_request")),
        ("a failed run", "workflow_run", failed_run(true), rules(), None),
        ("assigned to a person", "issues", assigned.clone(), rules_with_bot(), Some("not_assigned_to_bot")),
        ("the bot login unknown", "issues", assigned.clone(), rules(), Some("bot_login_unknown")),
        ("assigned to the bot", "issues", set(assigned, "/assignee/login", json!(BOT)), rules_with_bot(), None),
        ("a review without the handle", "pull_request_review", review, rules(), Some("no_mention")),
        ("no comment in the payload", "issue_comment", no_comment, rules(), Some("payload_unreadable")),
        ("no installation", "issue_comment", no_installation, rules(), Some("not_an_app_delivery")),
    ];
    for (what, event, payload, rules, expected) in cases {
        let (_, code) = deciding(event, &payload, &rules).unwrap_or_else(|| panic!("{what}: some way reads it"));
        assert_eq!(code, expected, "{what}");
    }
    // A delivery no way reads: every way says so.
    let mut deleted = comment("@openhands go");
    deleted["action"] = json!("deleted");
    assert_eq!(deciding("issue_comment", &deleted, &rules()), None);
}

async fn explanation(app: &TestApp, delivery: &str) -> (u16, Value) {
    let url = app.url(&format!("/api/v1/deliveries/{delivery}/explanation"));
    let response = app.http.get(url).bearer_auth(TOKEN).send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn the_explanation_route_names_the_rule_the_reason_and_the_triggers_fate(backend: Backend) {
    let fakes = Fakes::start("read").await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut flags = fakes.flags();
    flags.extend(["--api-token".to_owned(), TOKEN.to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn_on(db, &flags).await;
    assert_eq!(app.deliver("issue_comment", "d-ask", &comment_payload(7001, "@openhands fix it")).await.status(), 200);
    assert_eq!(app.deliver("issue_comment", "d-plain", &comment_payload(7002, "thanks!")).await.status(), 200);

    // A reader asked: the trigger is rejected by the permission step.
    eventually(Duration::from_secs(20), "the trigger's rejection", || async {
        explanation(&app, "d-ask").await.1["trigger"]["status"] == "rejected"
    })
    .await;
    let (status, asked) = explanation(&app, "d-ask").await;
    assert_eq!(status, 200);
    assert_eq!(asked["asks"], true);
    assert_eq!(asked["code"], "permission_denied");
    assert_eq!(asked["trigger"]["kind"], "issue_comment");
    assert_eq!(asked["trigger"]["rejection_code"], "permission_denied");
    assert_eq!(asked["trigger"]["rejection"], "Codertocat has read permission; admin, maintain or write is needed");
    let trigger_id = asked["trigger"]["trigger_id"].as_str().expect("an id").to_owned();
    assert_eq!(
        asked["summary"],
        format!(
            "issue_comment.created asks by `mention`: trigger {trigger_id} is rejected, permission_denied: \
             Codertocat has read permission; admin, maintain or write is needed"
        )
    );
    let ways = asked["ways"].as_array().expect("ways");
    assert_eq!(ways.len(), 7);
    assert_eq!(ways[1], json!({"way": "mention", "asks": true}));
    assert_eq!(ways[0]["code"], "event_not_a_trigger");
    assert_eq!(ways[0]["reason"], "`label` asks only on issues.labeled");

    let (status, plain) = explanation(&app, "d-plain").await;
    assert_eq!(status, 200);
    assert_eq!(plain["asks"], false);
    assert_eq!(plain["code"], "no_mention");
    assert_eq!(
        plain["summary"],
        "issue_comment.created does not ask by `mention`: the text does not mention @openhands"
    );
    assert_eq!(plain.get("trigger"), None);

    let (status, unknown) = explanation(&app, "d-unknown").await;
    assert_eq!(status, 404);
    assert_eq!(unknown, json!({"error": "not_found", "message": "no delivery d-unknown"}));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookwise_explain_prints_the_reason_and_the_trigger_and_json_with_json() {
    let Some(db) = TestDatabase::create(Backend::Sqlite).await else { return };
    let app = TestApp::spawn_on(db, &[]).await;
    assert_eq!(app.deliver("issue_comment", "d-ask", &comment_payload(8001, "@openhands fix it")).await.status(), 200);
    let mut by_bot: Value = serde_json::from_slice(&comment_payload(8002, "@openhands go")).expect("JSON");
    by_bot["sender"] = json!({"id": 1, "login": "renovate[bot]", "type": "Bot"});
    let by_bot = serde_json::to_vec(&by_bot).expect("JSON");
    assert_eq!(app.deliver("issue_comment", "d-bot", &by_bot).await.status(), 200);
    // No agent configured: the trigger stops at its first step.
    let rejected: TriggerRejected = app.first_event().await;
    assert_eq!(rejected.reason, "agent_not_configured");
    let db = app.stop().await;

    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_hookwise"))
            .arg("explain")
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("EVENTSTORE_URL", "")
            .env("RUST_LOG", "warn")
            .output()
            .expect("running hookwise explain");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    };
    let (ok, out, err) = run(&["d-ask"]);
    assert!(ok, "{err}");
    let id = rejected.trigger_id;
    assert!(
        out.starts_with("delivery d-ask: issue_comment.created\nasks for the agent [agent_not_configured]: "),
        "{out}"
    );
    assert!(out.contains("\n  mention         asks\n"), "{out}");
    assert!(
        out.contains("\n  label           no   event_not_a_trigger: `label` asks only on issues.labeled\n"),
        "{out}"
    );
    assert!(
        out.ends_with(&format!(
            "\ntrigger {id} (issue_comment): rejected, agent_not_configured: AGENT_API_URL is not set\n"
        )),
        "{out}"
    );

    let (ok, out, err) = run(&["d-bot", "--json"]);
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json["asks"], false);
    assert_eq!(json["code"], "bot_sender");
    assert_eq!(
        json["summary"],
        "issue_comment.created does not ask by `mention`: the sender renovate[bot] is a bot, and bots never ask"
    );

    let (ok, _, err) = run(&["d-unknown"]);
    assert!(!ok);
    assert!(err.contains("the log has no delivery d-unknown"), "{err}");
}
