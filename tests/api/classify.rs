//! Trigger classification over real GitHub payloads and variants of them.

use hookwise::commands::receive_webhook::{webhook_received, DeliveryHeaders};
use hookwise::events::{SecretSlot, TriggerKind};
use hookwise::triggers::classify::{classify, TriggerRules};
use serde_json::{json, Value};

use crate::helpers::{corpus_files, payload_examples};

fn headers(event: &str) -> DeliveryHeaders<'_> {
    DeliveryHeaders { event, delivery_id: "d-1", hook_id: "1", signature: "sha256=x" }
}

fn rules() -> TriggerRules {
    TriggerRules { proactive: true, ..TriggerRules::default() }
}

fn classify_value(event: &str, payload: &Value) -> Option<hookwise::events::TriggerDetected> {
    let body = serde_json::to_vec(payload).expect("serialisable");
    let received = webhook_received(&headers(event), SecretSlot::Current, &body).expect("a JSON object");
    classify(&received, &body, "delivery-1-d-1", 7, &rules())
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
        for payload in [payload.clone(), with_installation(payload)] {
            assert!(classify_value(&event, &payload).is_none(), "{} triggered", file.display());
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
    assert!(classify_value("issue_comment", &edited).is_none(), "edited comments start nothing");
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
