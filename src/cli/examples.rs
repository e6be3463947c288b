//! `hookwise send --example KIND`: realistic trigger payloads for trying the
//! whole flow locally. Each is a payload from GitHub's documentation (the
//! octokit/webhooks corpus, MIT, copied under `example_payloads/`) changed the
//! least needed to be a trigger: an `installation` object (every App delivery
//! has one), the trigger label or a mention of the handle (in a comment, a
//! review, or an edit whose previous body had none), a failed run.

use serde_json::{json, Value};

/// The kinds of request that start the agent.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExampleKind {
    /// `issues.labeled` with the trigger label.
    Label,
    /// A new issue comment mentioning the handle.
    IssueComment,
    /// A new comment on a pull request mentioning the handle.
    PrComment,
    /// A new inline review comment mentioning the handle.
    InlineComment,
    /// A failed `workflow_run.completed` on a pull request's head (needs proactive starters).
    FailedRun,
    /// A submitted pull request review whose body mentions the handle.
    Review,
    /// `pull_request.labeled` with the trigger label.
    PrLabel,
    /// An issue comment edited to mention the handle.
    EditedComment,
}

/// What an example needs to match the server's trigger settings.
#[derive(Debug, Clone)]
pub struct ExampleSettings {
    pub label: String,
    pub mention: String,
    pub installation_id: u64,
}

const ISSUE_COMMENT: &str = include_str!("example_payloads/issue_comment.created.json");
const ISSUES_LABELED: &str = include_str!("example_payloads/issues.labeled.json");
const REVIEW_COMMENT: &str = include_str!("example_payloads/pull_request_review_comment.created.json");
const WORKFLOW_RUN: &str = include_str!("example_payloads/workflow_run.completed.json");
const REVIEW: &str = include_str!("example_payloads/pull_request_review.submitted.json");
const PULL_REQUEST_LABELED: &str = include_str!("example_payloads/pull_request.labeled.json");
const ISSUE_COMMENT_EDITED: &str = include_str!("example_payloads/issue_comment.edited.json");

/// The pull request of the corpus's review comment: `Codertocat/Hello-World#2`.
const PULL_NUMBER: u64 = 2;

impl ExampleKind {
    /// The `X-GitHub-Event` it is sent as.
    pub fn event(self) -> &'static str {
        match self {
            ExampleKind::Label => "issues",
            ExampleKind::IssueComment | ExampleKind::PrComment | ExampleKind::EditedComment => "issue_comment",
            ExampleKind::Review => "pull_request_review",
            ExampleKind::PrLabel => "pull_request",
            ExampleKind::InlineComment => "pull_request_review_comment",
            ExampleKind::FailedRun => "workflow_run",
        }
    }

    /// The payload bytes, pretty-printed JSON, with the corpus's ids (the
    /// same request every time).
    pub fn payload(self, settings: &ExampleSettings) -> Vec<u8> {
        // Serialising a Value cannot fail.
        serde_json::to_vec_pretty(&self.value(settings)).unwrap_or_default()
    }

    /// The payload as a new request from `sender` on `repository`: a fresh
    /// comment, review and run id and `updated_at` (ids derived from `stamp`), so sending
    /// an example twice asks twice.
    pub fn fresh_payload(self, settings: &ExampleSettings, repository: &str, sender: &str, stamp: u64) -> Vec<u8> {
        let mut payload = self.value(settings);
        let name = repository.rsplit('/').next().unwrap_or(repository);
        let now =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        // Only fields the example has are changed (indexing would insert the others).
        for pointer in ["/repository", "/workflow_run/repository"] {
            if let Some(repo) = payload.pointer_mut(pointer).and_then(Value::as_object_mut) {
                repo.insert("full_name".into(), json!(repository));
                repo.insert("name".into(), json!(name));
                repo.insert("html_url".into(), json!(format!("https://github.com/{repository}")));
            }
        }
        for pointer in ["/sender", "/comment/user", "/issue/user", "/review/user", "/pull_request/user"] {
            if let Some(user) = payload.pointer_mut(pointer).and_then(Value::as_object_mut) {
                user.insert("login".into(), json!(sender));
            }
        }
        if let Some(comment) = payload.pointer_mut("/comment").and_then(Value::as_object_mut) {
            comment.insert("id".into(), json!(stamp));
            comment.insert("created_at".into(), json!(now));
            comment.insert("updated_at".into(), json!(now));
        }
        if let Some(review) = payload.pointer_mut("/review").and_then(Value::as_object_mut) {
            review.insert("id".into(), json!(stamp));
            review.insert("submitted_at".into(), json!(now));
        }
        if let Some(pull) = payload.pointer_mut("/pull_request").and_then(Value::as_object_mut) {
            pull.insert("updated_at".into(), json!(now));
        }
        if let Some(issue) = payload.pointer_mut("/issue").and_then(Value::as_object_mut) {
            issue.insert("updated_at".into(), json!(now));
        }
        if let Some(run) = payload.pointer_mut("/workflow_run").and_then(Value::as_object_mut) {
            run.insert("id".into(), json!(stamp));
        }
        serde_json::to_vec_pretty(&payload).unwrap_or_default()
    }

    fn value(self, settings: &ExampleSettings) -> Value {
        let mut payload = match self {
            ExampleKind::Label => {
                let mut p = corpus(ISSUES_LABELED);
                p["label"]["name"] = json!(settings.label);
                p["label"]["description"] = json!("Ask the agent to fix this issue");
                p
            }
            ExampleKind::IssueComment => {
                let mut p = corpus(ISSUE_COMMENT);
                p["comment"]["body"] = json!(format!("{} can you fix the typo in the README?", settings.mention));
                p
            }
            ExampleKind::PrComment => {
                // The same comment on the corpus's pull request: GitHub sends PR
                // conversation comments as `issue_comment` with a `pull_request` key.
                let mut p = corpus(ISSUE_COMMENT);
                let api = "https://api.github.com/repos/Codertocat/Hello-World";
                p["issue"]["number"] = json!(PULL_NUMBER);
                p["issue"]["title"] = json!("Update the README with new information.");
                p["issue"]["pull_request"] = json!({
                    "url": format!("{api}/pulls/{PULL_NUMBER}"),
                    "html_url": format!("https://github.com/Codertocat/Hello-World/pull/{PULL_NUMBER}"),
                    "diff_url": format!("https://github.com/Codertocat/Hello-World/pull/{PULL_NUMBER}.diff"),
                    "patch_url": format!("https://github.com/Codertocat/Hello-World/pull/{PULL_NUMBER}.patch"),
                });
                p["comment"]["id"] = json!(492_700_401u64);
                p["comment"]["body"] =
                    json!(format!("{} please make the tests pass on this branch.", settings.mention));
                p
            }
            ExampleKind::InlineComment => {
                let mut p = corpus(REVIEW_COMMENT);
                p["comment"]["body"] = json!(format!("{} use more emoji on this line, please.", settings.mention));
                p
            }
            ExampleKind::Review => {
                let mut p = corpus(REVIEW);
                p["review"]["body"] =
                    json!(format!("{} please address the comments of this review.", settings.mention));
                p
            }
            ExampleKind::PrLabel => {
                let mut p = corpus(PULL_REQUEST_LABELED);
                p["label"]["name"] = json!(settings.label);
                p["label"]["description"] = json!("Ask the agent to work on this pull request");
                p
            }
            ExampleKind::EditedComment => {
                let mut p = corpus(ISSUE_COMMENT_EDITED);
                p["comment"]["body"] = json!(format!("{} can you fix the typo in the README today?", settings.mention));
                p
            }
            ExampleKind::FailedRun => {
                // The corpus run (on another repository, with no PR) moved onto
                // the review comment's pull request and made to fail.
                let review = corpus(REVIEW_COMMENT);
                let pull = &review["pull_request"];
                let mut p = corpus(WORKFLOW_RUN);
                p["repository"] = review["repository"].clone();
                p["sender"] = review["sender"].clone();
                if let Some(object) = p.as_object_mut() {
                    object.remove("organization");
                }
                let run = &mut p["workflow_run"];
                run["name"] = json!("CI");
                run["conclusion"] = json!("failure");
                run["status"] = json!("completed");
                run["event"] = json!("pull_request");
                run["head_branch"] = pull["head"]["ref"].clone();
                run["head_sha"] = pull["head"]["sha"].clone();
                run["repository"] = review["repository"].clone();
                run["head_repository"] = review["repository"].clone();
                run["pull_requests"] = json!([{
                    "url": pull["url"],
                    "id": pull["id"],
                    "number": pull["number"],
                    "head": {"ref": pull["head"]["ref"], "sha": pull["head"]["sha"],
                             "repo": {"id": review["repository"]["id"], "url": review["repository"]["url"],
                                      "name": review["repository"]["name"]}},
                    "base": {"ref": pull["base"]["ref"], "sha": pull["base"]["sha"],
                             "repo": {"id": review["repository"]["id"], "url": review["repository"]["url"],
                                      "name": review["repository"]["name"]}},
                }]);
                p
            }
        };
        payload["installation"] = json!({
            "id": settings.installation_id,
            "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ==",
        });
        payload
    }
}

/// Parses a bundled corpus file (checked by the tests below).
fn corpus(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{RepositoryRef, SecretSlot, SenderRef, TriggerKind, WebhookReceived};
    use crate::triggers::classify::{classify, TriggerRules};
    use clap::ValueEnum;

    fn settings() -> ExampleSettings {
        ExampleSettings { label: "openhands".into(), mention: "@openhands".into(), installation_id: 4242 }
    }

    fn received(kind: ExampleKind, payload: &[u8]) -> WebhookReceived {
        let value: Value = serde_json::from_slice(payload).unwrap();
        WebhookReceived {
            delivery_id: "d-example".into(),
            hook_id: "1".into(),
            event: kind.event().into(),
            action: value["action"].as_str().map(str::to_owned),
            installation_id: value["installation"]["id"].as_u64(),
            repository: Some(RepositoryRef {
                id: value["repository"]["id"].as_u64().unwrap(),
                full_name: value["repository"]["full_name"].as_str().unwrap().into(),
            }),
            sender: Some(SenderRef {
                id: value["sender"]["id"].as_u64().unwrap(),
                login: value["sender"]["login"].as_str().unwrap().into(),
                kind: value["sender"]["type"].as_str().unwrap().into(),
            }),
            signature: "sha256=00".into(),
            secret: SecretSlot::Current,
        }
    }

    #[test]
    fn every_example_is_the_trigger_it_names() {
        let rules = TriggerRules { proactive: true, ..TriggerRules::default() };
        let expected = [
            (ExampleKind::Label, TriggerKind::Label, 1),
            (ExampleKind::IssueComment, TriggerKind::IssueComment, 1),
            (ExampleKind::PrComment, TriggerKind::PrComment, 2),
            (ExampleKind::InlineComment, TriggerKind::ReviewComment, 2),
            (ExampleKind::FailedRun, TriggerKind::FailedWorkflow, 2),
            (ExampleKind::Review, TriggerKind::PrReview, 2),
            (ExampleKind::PrLabel, TriggerKind::PrLabel, 2),
            (ExampleKind::EditedComment, TriggerKind::EditedIssueComment, 1),
        ];
        assert_eq!(expected.len(), ExampleKind::value_variants().len());
        for (example, kind, number) in expected {
            let payload = example.payload(&settings());
            let trigger = classify(&received(example, &payload), &payload, "delivery-1-d", 1, &rules)
                .unwrap_or_else(|| panic!("{example:?} is not a trigger"));
            assert_eq!((trigger.kind, trigger.number, trigger.installation_id), (kind, number, 4242), "{example:?}");
        }
    }

    #[test]
    fn fresh_examples_are_new_requests_on_the_given_repository() {
        let rules = TriggerRules { proactive: true, ..TriggerRules::default() };
        for example in ExampleKind::value_variants().iter().copied() {
            let first = example.fresh_payload(&settings(), "acme/widgets", "alice", 1);
            let second = example.fresh_payload(&settings(), "acme/widgets", "alice", 2);
            let a = classify(&received(example, &first), &first, "s", 1, &rules).expect("a trigger");
            let b = classify(&received(example, &second), &second, "s", 1, &rules).expect("a trigger");
            assert_eq!((a.repository.full_name.as_str(), a.requester.login.as_str()), ("acme/widgets", "alice"));
            if example == ExampleKind::FailedRun {
                assert_eq!(a.trigger_id, b.trigger_id, "one suggestion per (repository, PR, sha)");
            } else if !matches!(example, ExampleKind::Label | ExampleKind::PrLabel) {
                assert_ne!(a.trigger_id, b.trigger_id, "{example:?}: a new comment is a new request");
            }
        }
    }

    #[test]
    fn examples_follow_the_configured_label_and_handle() {
        let custom = ExampleSettings { label: "agent-fix".into(), mention: "@my-bot".into(), installation_id: 1 };
        let payload = ExampleKind::IssueComment.payload(&custom);
        let rules = TriggerRules { label: "agent-fix".into(), mention: "@my-bot".into(), ..TriggerRules::default() };
        let hit = classify(&received(ExampleKind::IssueComment, &payload), &payload, "s", 1, &rules);
        assert!(hit.is_some());
        let payload = ExampleKind::Label.payload(&custom);
        let default_rules = TriggerRules::default();
        assert!(classify(&received(ExampleKind::Label, &payload), &payload, "s", 1, &default_rules).is_none());
        assert!(classify(&received(ExampleKind::Label, &payload), &payload, "s", 1, &rules).is_some());
    }
}
