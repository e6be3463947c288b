//! Trigger classification over real GitHub payloads and variants of them.

use hookwise::commands::receive_webhook::{webhook_received, DeliveryHeaders};
use hookwise::events::{SecretSlot, TriggerKind};
use hookwise::triggers::classify::{classify, TriggerRules, TriggerSwitch};
use serde_json::{json, Value};

use crate::helpers::{corpus_files, payload_examples};

fn headers(event: &str) -> DeliveryHeaders<'_> {
    DeliveryHeaders { event, delivery_id: "d-1", hook_id: "1", signature: "sha256=x" }
}

fn rules() -> TriggerRules {
    TriggerRules { proactive: true, ..TriggerRules::default() }
}

fn classify_value(event: &str, payload: &Value) -> Option<hookwise::events::TriggerDetected> {
    classify_with(event, payload, &rules())
}

fn classify_with(event: &str, payload: &Value, rules: &TriggerRules) -> Option<hookwise::events::TriggerDetected> {
    let body = serde_json::to_vec(payload).expect("serialisable");
    let received = webhook_received(&headers(event), SecretSlot::Current, &body).expect("a JSON object");
    classify(&received, &body, "delivery-1-d-1", 7, rules)
}

const BOT: &str = "hookwise-app[bot]";

/// The rules with the App's bot login known, as after `GET /app`.
fn rules_with_bot() -> TriggerRules {
    TriggerRules { bot_login: Some(BOT.into()), ..rules() }
}

fn corpus(event: &str, file: &str) -> Option<Value> {
    let dir = payload_examples()?;
    let text = std::fs::read(dir.join(event).join(file)).expect("a corpus file");
    Some(serde_json::from_slice(&text).expect("corpus JSON"))
}

fn with_installation(mut payload: Value) -> Value {
    payload["installation"] = json!({"id": 4242});
    payload
}

#[test]
fn no_corpus_payload_triggers_as_shipped() {
    let Some(dir) = payload_examples() else { return };
    for (event, file) in corpus_files(&dir) {
        let body = std::fs::read(&file).expect("a corpus file");
        let payload: Value = serde_json::from_slice(&body).expect("corpus JSON");
        // Even with an installation added, as a GitHub App delivery would carry.
        // And with the bot login known: no corpus assignment is to a bot.
        for payload in [payload.clone(), with_installation(payload)] {
            assert!(classify_value(&event, &payload).is_none(), "{} triggered", file.display());
            assert!(classify_with(&event, &payload, &rules_with_bot()).is_none(), "{} triggered", file.display());
        }
    }
}

#[test]
fn variants_of_corpus_payloads_trigger_as_the_reference_says() {
    let Some(comment) = corpus("issue_comment", "created.payload.json") else { return };
    let Some(labeled) = corpus("issues", "labeled.payload.json") else { return };
    let Some(review) = corpus("pull_request_review_comment", "created.payload.json") else { return };
    let Some(run) = corpus("workflow_run", "completed.payload.json") else { return };

    // A mention in an issue comment.
    let mut asks = with_installation(comment.clone());
    asks["comment"]["body"] = json!("Could you look at this, @OpenHands?");
    let trigger = classify_value("issue_comment", &asks).expect("a mention triggers");
    assert_eq!(trigger.kind, TriggerKind::IssueComment);
    assert_eq!(trigger.installation_id, 4242);
    assert_eq!(trigger.comment_id, asks["comment"]["id"].as_u64());
    assert_eq!(trigger.number, asks["issue"]["number"].as_u64().expect("number"));
    assert_eq!(trigger.message, "Could you look at this, @OpenHands?");
    assert_eq!(trigger.delivery_position, 7);

    // The same comment through another hook or delivery is the same trigger.
    let again = classify_value("issue_comment", &asks).expect("still a trigger");
    assert_eq!(again.trigger_id, trigger.trigger_id);

    // On a pull request's conversation.
    let mut on_pr = asks.clone();
    on_pr["issue"]["pull_request"] = json!({"url": "https://api.github.com/repos/o/r/pulls/1"});
    assert_eq!(classify_value("issue_comment", &on_pr).expect("PR comment").kind, TriggerKind::PrComment);

    // What must not trigger.
    let mut variant = asks.clone();
    variant["comment"]["body"] = json!("mail user@openhands.com or ask @openhands-agent");
    assert!(classify_value("issue_comment", &variant).is_none(), "not a mention");
    let mut bot = asks.clone();
    bot["sender"]["type"] = json!("Bot");
    assert!(classify_value("issue_comment", &bot).is_none(), "bot sender");
    let mut app = asks.clone();
    app["sender"]["login"] = json!("hookwise-app[bot]");
    assert!(classify_value("issue_comment", &app).is_none(), "the App's own comment");
    let mut marked = asks.clone();
    marked["comment"]["body"] = json!("I'm on it! @openhands <!-- hookwise:123 -->");
    assert!(classify_value("issue_comment", &marked).is_none(), "hookwise's own comment");
    let mut edited = asks.clone();
    edited["action"] = json!("edited");
    assert!(classify_value("issue_comment", &edited).is_none(), "an edit without `changes.body` changed no text");
    assert!(classify_value("issue_comment", &comment).is_none(), "no installation, nothing to act with");

    // The label, exactly.
    let mut label = with_installation(labeled.clone());
    label["label"]["name"] = json!("openhands");
    let trigger = classify_value("issues", &label).expect("the label triggers");
    assert_eq!(trigger.kind, TriggerKind::Label);
    assert_eq!(trigger.message, format!("Please fix issue number #{}.", trigger.number));
    let mut other = label.clone();
    other["label"]["name"] = json!("OpenHands");
    assert!(classify_value("issues", &other).is_none(), "labels compare exactly");

    // An inline review comment carries the file, line and head branch.
    let mut inline = with_installation(review.clone());
    inline["comment"]["body"] = json!("@openhands rename this");
    let trigger = classify_value("pull_request_review_comment", &inline).expect("inline mention");
    assert_eq!(trigger.kind, TriggerKind::ReviewComment);
    assert_eq!(trigger.path.as_deref(), inline["comment"]["path"].as_str());
    assert_eq!(trigger.head_branch.as_deref(), inline["pull_request"]["head"]["ref"].as_str());
    assert_eq!(trigger.thread_id, None, "a thread's first comment");
    let mut reply = inline.clone();
    reply["comment"]["in_reply_to_id"] = json!(426899381u64);
    let trigger = classify_value("pull_request_review_comment", &reply).expect("a mention in a reply");
    assert_eq!(trigger.thread_id, Some(426899381), "replies to it go to the thread's first comment");

    // A failed run on a pull request's head, with proactive starters on.
    let mut failed = with_installation(run.clone());
    failed["workflow_run"]["conclusion"] = json!("failure");
    let sha = failed["workflow_run"]["head_sha"].clone();
    failed["workflow_run"]["pull_requests"] = json!([{"number": 5, "head": {"ref": "fix", "sha": sha}}]);
    let trigger = classify_value("workflow_run", &failed).expect("a failed run");
    assert_eq!(trigger.kind, TriggerKind::FailedWorkflow);
    assert_eq!(trigger.number, 5);
    let off = {
        let body = serde_json::to_vec(&failed).expect("serialisable");
        let received = webhook_received(&headers("workflow_run"), SecretSlot::Current, &body).expect("object");
        classify(&received, &body, "s", 1, &TriggerRules::default())
    };
    assert!(off.is_none(), "proactive starters are off by default");
}

#[test]
fn every_send_example_asks_for_the_agent_as_its_name_says() {
    use hookwise::cli::send::{example_payload, Example};
    let cases = [
        (Example::Label, TriggerKind::Label),
        (Example::IssueComment, TriggerKind::IssueComment),
        (Example::PrComment, TriggerKind::PrComment),
        (Example::InlineComment, TriggerKind::ReviewComment),
        (Example::FailedRun, TriggerKind::FailedWorkflow),
        (Example::Review, TriggerKind::PrReview),
        (Example::PrLabel, TriggerKind::PrLabel),
        (Example::EditedComment, TriggerKind::EditedIssueComment),
    ];
    for (example, kind) in cases {
        let (event, body) = example_payload(example, "octo-org/hello-world", 7, "octocat");
        let received = webhook_received(&headers(&event), SecretSlot::Current, &body).expect("a JSON object");
        let trigger = classify(&received, &body, "s", 1, &rules()).unwrap_or_else(|| panic!("{example:?} triggers"));
        assert_eq!(trigger.kind, kind, "{example:?}");
        assert_eq!(trigger.installation_id, 7);
        assert_eq!(trigger.repository.full_name, "octo-org/hello-world");
    }
}

#[test]
fn a_submitted_review_asks_when_its_body_names_the_handle() {
    let Some(submitted) = corpus("pull_request_review", "submitted.payload.json") else { return };
    let shipped = submitted.clone();
    assert!(classify_value("pull_request_review", &shipped).is_none(), "no body, no request");
    let mut review = submitted;
    review["review"]["body"] = json!("Looks close. @OpenHands please address the nits.");
    let trigger = classify_value("pull_request_review", &review).expect("a mention in a review body");
    assert_eq!(trigger.kind, TriggerKind::PrReview);
    assert!(trigger.kind.is_pull_request());
    assert_eq!(trigger.number, review["pull_request"]["number"].as_u64().expect("number"));
    assert_eq!(trigger.comment_id, review["review"]["id"].as_u64());
    assert_eq!(trigger.message, "Looks close. @OpenHands please address the nits.");
    assert_eq!(trigger.head_branch.as_deref(), review["pull_request"]["head"]["ref"].as_str());
    assert_eq!(trigger.requester.login, review["sender"]["login"].as_str().expect("login"));
    // The same review again (a redelivery, another hook) is the same trigger.
    assert_eq!(classify_value("pull_request_review", &review).map(|t| t.trigger_id), Some(trigger.trigger_id));
    // Another review with the same body is another request.
    let mut second = review.clone();
    second["review"]["id"] = json!(237895672u64);
    assert_ne!(classify_value("pull_request_review", &second).map(|t| t.trigger_id), Some(trigger.trigger_id));

    for (body, why) in [
        ("Looks good to me.", "no mention"),
        ("ask @openhands-agent", "another handle"),
        ("I'm on it @openhands <!-- hookwise:1 -->", "hookwise's own text"),
    ] {
        let mut other = review.clone();
        other["review"]["body"] = json!(body);
        assert!(classify_value("pull_request_review", &other).is_none(), "{why}");
    }
    let mut dismissed = review.clone();
    dismissed["action"] = json!("dismissed");
    assert!(classify_value("pull_request_review", &dismissed).is_none(), "only a submitted review asks");
    let mut by_bot = review.clone();
    by_bot["sender"]["login"] = json!(BOT);
    assert!(classify_value("pull_request_review", &by_bot).is_none(), "a bot's review");
}

#[test]
fn the_trigger_label_on_a_pull_request_asks() {
    let Some(labeled) = corpus("pull_request", "labeled.payload.json") else { return };
    let mut asks = labeled;
    asks["label"]["name"] = json!("openhands");
    let trigger = classify_value("pull_request", &asks).expect("the label on a PR");
    assert_eq!(trigger.kind, TriggerKind::PrLabel);
    assert_eq!(trigger.number, asks["pull_request"]["number"].as_u64().expect("number"));
    assert_eq!(trigger.head_branch.as_deref(), asks["pull_request"]["head"]["ref"].as_str());
    assert_eq!(trigger.comment_id, None);
    assert!(trigger.message.contains(&format!("pull request #{}", trigger.number)), "{}", trigger.message);
    assert_eq!(classify_value("pull_request", &asks).map(|t| t.trigger_id), Some(trigger.trigger_id));
    // Labelling again later (a new `updated_at`) is a new request.
    let mut later = asks.clone();
    later["pull_request"]["updated_at"] = json!("2030-01-01T00:00:00Z");
    assert_ne!(classify_value("pull_request", &later).map(|t| t.trigger_id), Some(trigger.trigger_id));

    for name in ["bug", "OpenHands", "openhands-later"] {
        let mut other = asks.clone();
        other["label"]["name"] = json!(name);
        assert!(classify_value("pull_request", &other).is_none(), "label {name:?}");
    }
}

#[test]
fn an_assignment_to_the_apps_bot_user_asks() {
    let Some(issue) = corpus("issues", "assigned.with-installation.payload.json") else { return };
    let Some(pull) = corpus("pull_request", "assigned.payload.json") else { return };
    let to = |mut payload: Value, login: &str| {
        payload["assignee"]["login"] = json!(login);
        payload["assignee"]["type"] = json!("Bot");
        payload
    };

    let on_issue = to(issue.clone(), BOT);
    let trigger = classify_with("issues", &on_issue, &rules_with_bot()).expect("assigned to the bot");
    assert_eq!(trigger.kind, TriggerKind::IssueAssigned);
    assert!(!trigger.kind.is_pull_request());
    assert_eq!(trigger.message, format!("Please fix issue number #{}.", trigger.number));
    let again = classify_with("issues", &on_issue, &rules_with_bot()).map(|t| t.trigger_id);
    assert_eq!(again, Some(trigger.trigger_id));
    // The login compares case-insensitively, as GitHub's logins do.
    assert!(classify_with("issues", &to(issue.clone(), "HookWise-App[bot]"), &rules_with_bot()).is_some());

    let on_pr = to(pull.clone(), BOT);
    let trigger = classify_with("pull_request", &on_pr, &rules_with_bot()).expect("a PR assigned to the bot");
    assert_eq!(trigger.kind, TriggerKind::PrAssigned);
    assert_eq!(trigger.head_branch.as_deref(), on_pr["pull_request"]["head"]["ref"].as_str());

    for (event, payload, why) in [
        ("issues", issue.clone(), "assigned to a person"),
        ("issues", to(issue.clone(), "dependabot[bot]"), "assigned to another bot"),
        ("issues", to(issue.clone(), "hookwise-app"), "a user named like the App"),
        ("pull_request", to(pull.clone(), "renovate[bot]"), "a PR assigned to another bot"),
    ] {
        assert!(classify_with(event, &payload, &rules_with_bot()).is_none(), "{why}");
    }
    // The bot login unknown (no `GET /app`, no HOOKWISE_BOT_LOGIN): assignments ask nothing.
    assert!(classify_value("issues", &on_issue).is_none(), "bot login unknown");
    let mut unassigned = on_issue.clone();
    unassigned["action"] = json!("unassigned");
    assert!(classify_with("issues", &unassigned, &rules_with_bot()).is_none(), "unassigning");
}

#[test]
fn a_comment_edited_to_name_the_handle_asks_once_per_edit() {
    let Some(edited) = corpus("issue_comment", "edited.payload.json") else { return };
    let Some(inline) = corpus("pull_request_review_comment", "edited.payload.json") else { return };
    let edit = |mut payload: Value, before: &str, after: &str| {
        payload = with_installation(payload);
        payload["changes"] = json!({"body": {"from": before}});
        payload["comment"]["body"] = json!(after);
        payload
    };

    let asks = edit(edited.clone(), "Fix the tpyo", "Fix the typo, @openhands");
    let trigger = classify_value("issue_comment", &asks).expect("the edit brought the mention");
    assert_eq!(trigger.kind, TriggerKind::EditedIssueComment);
    assert_eq!(trigger.comment_id, asks["comment"]["id"].as_u64());
    assert_eq!(trigger.message, "Fix the typo, @openhands");
    assert_eq!(classify_value("issue_comment", &asks).map(|t| t.trigger_id), Some(trigger.trigger_id));
    // Not the trigger of the comment's creation, and a later edit is a new request.
    let mut created = asks.clone();
    created["action"] = json!("created");
    assert_ne!(classify_value("issue_comment", &created).map(|t| t.trigger_id), Some(trigger.trigger_id));
    let mut later = asks.clone();
    later["comment"]["updated_at"] = json!("2030-01-01T00:00:00Z");
    assert_ne!(classify_value("issue_comment", &later).map(|t| t.trigger_id), Some(trigger.trigger_id));

    let mut on_pr = asks.clone();
    on_pr["issue"]["pull_request"] = json!({"url": "https://api.github.com/repos/o/r/pulls/1"});
    assert_eq!(classify_value("issue_comment", &on_pr).map(|t| t.kind), Some(TriggerKind::EditedPrComment));

    let inline_asks = edit(inline.clone(), "rename this", "@openhands rename this");
    let trigger = classify_value("pull_request_review_comment", &inline_asks).expect("an edited inline comment");
    assert_eq!(trigger.kind, TriggerKind::EditedReviewComment);
    assert_eq!(trigger.path.as_deref(), inline_asks["comment"]["path"].as_str());

    for (before, after, why) in [
        ("@openhands fix it", "@openhands fix it, please", "the old body already mentioned the handle"),
        ("@OPENHANDS fix it", "@openhands fix it", "already mentioned, in other case"),
        ("fix it", "fix it, @openhands-agent", "another handle"),
        ("fix it", "no longer needed", "no mention at all"),
        ("fix it", "@openhands <!-- hookwise:1 -->", "hookwise's own text"),
    ] {
        let payload = edit(edited.clone(), before, after);
        assert!(classify_value("issue_comment", &payload).is_none(), "{why}");
    }
    // An old body that was hookwise's own marker text never counted as asking.
    let from_marker = edit(edited.clone(), "@openhands <!-- hookwise:1 -->", "@openhands please");
    assert!(classify_value("issue_comment", &from_marker).is_some());
    let inline_already = edit(inline, "@openhands rename", "@openhands rename this");
    assert!(classify_value("pull_request_review_comment", &inline_already).is_none(), "inline, already mentioned");
}

#[test]
fn each_way_of_asking_can_be_switched_off() {
    let (Some(comment), Some(labeled), Some(review), Some(pr_labeled), Some(assigned), Some(edited), Some(run)) = (
        corpus("issue_comment", "created.payload.json"),
        corpus("issues", "labeled.payload.json"),
        corpus("pull_request_review", "submitted.payload.json"),
        corpus("pull_request", "labeled.payload.json"),
        corpus("issues", "assigned.with-installation.payload.json"),
        corpus("issue_comment", "edited.payload.json"),
        corpus("workflow_run", "completed.payload.json"),
    ) else {
        return;
    };
    let set = |mut payload: Value, pointer: &str, value: Value| {
        payload = with_installation(payload);
        *payload.pointer_mut(pointer).expect("the field") = value;
        payload
    };
    let mut edited = set(edited, "/comment/body", json!("now @openhands"));
    edited["changes"] = json!({"body": {"from": "now"}});
    let mut failed = set(run, "/workflow_run/conclusion", json!("failure"));
    let sha = failed["workflow_run"]["head_sha"].clone();
    failed["workflow_run"]["pull_requests"] = json!([{"number": 5, "head": {"ref": "fix", "sha": sha}}]);
    let cases = [
        (TriggerSwitch::Mention, "issue_comment", set(comment, "/comment/body", json!("@openhands go"))),
        (TriggerSwitch::Label, "issues", set(labeled, "/label/name", json!("openhands"))),
        (TriggerSwitch::Review, "pull_request_review", set(review, "/review/body", json!("@openhands go"))),
        (TriggerSwitch::PrLabel, "pull_request", set(pr_labeled, "/label/name", json!("openhands"))),
        (TriggerSwitch::Assign, "issues", set(assigned, "/assignee/login", json!(BOT))),
        (TriggerSwitch::EditedMention, "issue_comment", edited),
        (TriggerSwitch::FailedRun, "workflow_run", failed),
    ];
    for (switch, event, payload) in cases {
        let on = rules_with_bot();
        assert!(classify_with(event, &payload, &on).is_some(), "{switch:?} asks when on");
        let mut off = on.clone();
        off.enabled.remove(&switch);
        assert!(classify_with(event, &payload, &off).is_none(), "{switch:?} switched off");
        // And it asks with every other way switched off.
        let only = TriggerRules { enabled: [switch].into_iter().collect(), ..on.clone() };
        assert!(classify_with(event, &payload, &only).is_some(), "{switch:?} alone");
    }
}

#[test]
fn the_list_of_ways_to_ask_is_read_strictly() {
    let all = TriggerSwitch::parse_list("label,mention,review,assign,pr-label,edited-mention,failed-run").expect("all");
    assert_eq!(all.len(), TriggerSwitch::ALL.len());
    let some = TriggerSwitch::parse_list(" Mention , pr-label,").expect("two");
    assert_eq!(some.into_iter().collect::<Vec<_>>(), vec![TriggerSwitch::Mention, TriggerSwitch::PrLabel]);
    let err = TriggerSwitch::parse_list("mention,assignment").expect_err("unknown name");
    assert!(err.contains("\"assignment\"") && err.contains("edited-mention"), "{err}");
    // failed-run also needs proactive starters.
    let rules = TriggerRules::default();
    assert!(rules.enabled.contains(&TriggerSwitch::FailedRun) && !rules.allows(TriggerSwitch::FailedRun));
}
