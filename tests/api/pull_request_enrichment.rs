//! A closed pull request's figures from the GitHub API (`PullRequestEnriched`),
//! fetched by the executor only where the agent has acted, counted once over
//! every page, never fetched again by a redelivery or a rebuild; and the PR's
//! link to the conversation that opened it.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use hookwise::events::pull_request::PullRequestEnriched;
use hookwise::events::pull_request::{EnrichmentAbandoned, EnrichmentFailed, EnrichmentRetried};
use hookwise::events::{DomainEvent, StepFailed};
use hookwise::sql::SqlDb;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{backend_tests, Backend, TestApp, TestDatabase};
use crate::query_api::{caught_up, get, post, TOKEN};
use crate::triggers::{base_payload, comment_payload, Fakes, REPO};

backend_tests!(
    a_closed_pr_where_the_agent_acted_is_enriched_once_and_linked_to_its_conversation,
    a_closed_pr_where_the_agent_never_acted_costs_no_github_call,
    a_502_while_enriching_is_retried_into_one_event,
    an_abandoned_enrichment_is_retried_from_the_admin_api_into_one_event,
);

/// The pull request the agent opened (issue #1 is where it was asked).
const PR: u64 = 2;
const CONVERSATION_URL: &str = "https://agent.example/c/conv-1";

async fn spawn(backend: Backend, fakes: &Fakes) -> Option<TestApp> {
    let db = TestDatabase::create(backend).await?;
    let mut flags = fakes.flags();
    flags.extend(["--api-token".to_owned(), TOKEN.to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Some(TestApp::spawn_on(db, &flags).await)
}

fn pull_request_payload(action: &str) -> Vec<u8> {
    let closed = action == "closed";
    let closed_at = if closed { json!("2019-05-16T10:00:00Z") } else { Value::Null };
    let mut payload = base_payload();
    payload["action"] = json!(action);
    payload["number"] = json!(PR);
    payload["pull_request"] = json!({
        "number": PR,
        "title": "Fix the spelling in the README",
        "state": if closed { "closed" } else { "open" },
        "merged": closed,
        "merged_at": closed_at,
        "closed_at": closed_at,
        "created_at": "2019-05-15T16:00:00Z",
        "user": {"login": "openhands-agent"},
        "body": format!("Fixes #1.\n\nCodertocat can click here to [continue refining the PR]({CONVERSATION_URL})."),
        "head": {"ref": "openhands-fix-issue-1", "sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821"},
    });
    serde_json::to_vec(&payload).expect("JSON")
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// The PR on GitHub: commits and general comments on two pages, each of
/// which repeats an item of the first. Every GET is expected `times` times.
async fn mount_pull_request(fakes: &Fakes, times: RangeInclusive<u64>) {
    let base = fakes.github.uri();
    let pulls = format!("/repos/{REPO}/pulls/{PR}");
    let next = |list: &str| {
        format!("<{base}{list}?per_page=100&page=2>; rel=\"next\", <{base}{list}?per_page=100&page=2>; rel=\"last\"")
    };
    let mount = |list: String, page: Option<&'static str>, answer: ResponseTemplate| {
        let github = &fakes.github;
        let times = times.clone();
        async move {
            let mock = Mock::given(method("GET")).and(path(list.as_str()));
            let mock = match page {
                Some(page) => mock.and(query_param("page", page)),
                None => mock.and(query_param_is_missing("page")),
            };
            mock.respond_with(answer).expect(times).mount(github).await;
        }
    };
    mount(pulls.clone(), None, ok(json!({"number": PR, "changed_files": 4, "additions": 120, "deletions": 7}))).await;

    let by_agent =
        json!({"sha": "a1", "commit": {"author": {"name": "OpenHands Agent"}}, "author": {"login": "openhands-agent"}});
    let by_human = json!({"sha": "b2", "commit": {"author": {"name": "Alice"}}, "author": {"login": "alice"}});
    let by_name = json!({"sha": "c3", "commit": {"author": {"name": "openhands"}}, "author": null});
    let commits = format!("{pulls}/commits");
    mount(commits.clone(), None, ok(json!([by_agent, by_human])).insert_header("link", next(&commits).as_str())).await;
    mount(commits.clone(), Some("2"), ok(json!([by_human, by_name]))).await;

    let review_comments = json!([
        {"id": 801, "body": "Rename this?", "user": {"login": "bob"}},
        {"id": 802, "body": "Done.", "user": {"login": "openhands-agent"}},
    ]);
    mount(format!("{pulls}/comments"), None, ok(review_comments)).await;
    let reviews = json!([
        {"id": 71, "body": "LGTM", "state": "APPROVED", "user": {"login": "bob"}},
        {"id": 72, "body": "", "state": "COMMENTED", "user": {"login": "carol"}},
        {"id": 73, "body": "a draft", "state": "PENDING", "user": {"login": "dave"}},
    ]);
    mount(format!("{pulls}/reviews"), None, ok(reviews)).await;

    let first = json!({"id": 901, "body": "I'm on it!", "user": {"login": "openhands-agent"}});
    let repeated = json!({"id": 902, "body": "Thanks", "user": {"login": "alice"}});
    let last = json!({"id": 903, "body": "Merging", "user": {"login": "bob"}});
    let comments = format!("/repos/{REPO}/issues/{PR}/comments");
    mount(comments.clone(), None, ok(json!([first, repeated])).insert_header("link", next(&comments).as_str())).await;
    mount(comments, Some("2"), ok(json!([repeated, last]))).await;
}

/// GitHub answers the PR's reviews with `502` the first `times` times.
async fn fail_reviews(fakes: &Fakes, times: u64) {
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/pulls/{PR}/reviews")))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(times)
        .with_priority(1)
        .expect(times)
        .mount(&fakes.github)
        .await;
}

/// GETs of the PR's figures that reached GitHub.
async fn enrichment_calls(fakes: &Fakes) -> Vec<String> {
    let pulls = format!("/repos/{REPO}/pulls/{PR}");
    let comments = format!("/repos/{REPO}/issues/{PR}/comments");
    fakes
        .github
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "GET")
        .filter(|r| r.url.path().starts_with(&pulls) || r.url.path() == comments)
        .map(|r| format!("{}?{}", r.url.path(), r.url.query().unwrap_or("")))
        .collect()
}

/// The agent acts in the repository: a mention on issue #1 starts
/// conversation `conv-1` (whose acknowledgement is posted after its
/// `ConversationStarted` is in the log).
async fn agent_acts(app: &TestApp, fakes: &Fakes) {
    let mention = comment_payload(9700, "@openhands please fix the typo");
    assert_eq!(app.deliver("issue_comment", "d-pr-mention", &mention).await.status(), 200);
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
}

async fn wait_for_enrichment(app: &TestApp) -> Vec<PullRequestEnriched> {
    let started = Instant::now();
    loop {
        let found: Vec<PullRequestEnriched> = app
            .log()
            .await
            .iter()
            .filter(|e| e.event_type == PullRequestEnriched::TYPE)
            .map(|e| PullRequestEnriched::decode(e).expect("decodes"))
            .collect();
        if !found.is_empty() {
            return found;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the PR was enriched");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn the_pull_request(app: &TestApp) -> Value {
    caught_up(app).await;
    let (status, body) = get(app, &format!("/api/v1/pull-requests/{REPO}/{PR}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn expected_figures() -> PullRequestEnriched {
    PullRequestEnriched {
        repository_id: 186853002,
        repository: REPO.to_owned(),
        number: PR,
        commits: 3,
        openhands_commits: 2,
        changed_files: 4,
        additions: 120,
        deletions: 7,
        // Two review comments and one review with a body (the pending draft does not count).
        review_comments: 3,
        openhands_review_comments: 1,
        general_comments: 3,
        openhands_general_comments: 1,
        reviewers: vec!["bob".to_owned(), "carol".to_owned()],
    }
}

async fn a_closed_pr_where_the_agent_acted_is_enriched_once_and_linked_to_its_conversation(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    mount_pull_request(&fakes, 1..=1).await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    agent_acts(&app, &fakes).await;
    assert_eq!(app.deliver("pull_request", "d-pr-opened", &pull_request_payload("opened")).await.status(), 200);
    assert_eq!(app.deliver("pull_request", "d-pr-closed", &pull_request_payload("closed")).await.status(), 200);

    let enriched = wait_for_enrichment(&app).await;
    assert_eq!(enriched, vec![expected_figures()]);
    let pr = the_pull_request(&app).await;
    let figures = json!({
        "status": pr["status"], "enriched": pr["enriched"], "commits": pr["commits"],
        "changed_files": pr["changed_files"], "additions": pr["additions"], "deletions": pr["deletions"],
        "review_comments": pr["review_comments"], "general_comments": pr["general_comments"],
        "reviewers": pr["reviewers"], "num_openhands_commits": pr["num_openhands_commits"],
        "num_openhands_review_comments": pr["num_openhands_review_comments"],
        "num_openhands_general_comments": pr["num_openhands_general_comments"],
        "openhands_helped_author": pr["openhands_helped_author"], "conversation_id": pr["conversation_id"],
    });
    let expected = json!({
        "status": "merged", "enriched": true, "commits": 3, "changed_files": 4, "additions": 120, "deletions": 7,
        "review_comments": 3, "general_comments": 3, "reviewers": 2, "num_openhands_commits": 2,
        "num_openhands_review_comments": 1, "num_openhands_general_comments": 1,
        "openhands_helped_author": true, "conversation_id": "conv-1",
    });
    assert_eq!(figures, expected);
    let pulls = format!("/repos/{REPO}/pulls/{PR}");
    let comments = format!("/repos/{REPO}/issues/{PR}/comments");
    assert_eq!(
        enrichment_calls(&fakes).await,
        vec![
            format!("{pulls}?"),
            format!("{pulls}/commits?per_page=100"),
            format!("{pulls}/commits?per_page=100&page=2"),
            format!("{pulls}/comments?per_page=100"),
            format!("{pulls}/reviews?per_page=100"),
            format!("{comments}?per_page=100"),
            format!("{comments}?per_page=100&page=2"),
        ],
        "each list read once, page by page"
    );

    // A redelivery (answered as a duplicate), the same closing through a
    // second hook, and a rebuild of the read model: no further GitHub call.
    assert_eq!(app.deliver("pull_request", "d-pr-closed", &pull_request_payload("closed")).await.status(), 200);
    let body = pull_request_payload("closed");
    let second_hook = app
        .http
        .post(app.url("/integration/github/events"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "d-pr-closed-hook-2")
        .header("x-github-hook-id", "99")
        .header("x-hub-signature-256", crate::helpers::sign(crate::helpers::TEST_SECRET, &body))
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(second_hook.status(), 200);
    let (status, answer) = post(&app, "/api/v1/admin/rebuild/pull_requests").await;
    assert_eq!(status, 200, "{answer}");
    let rebuilt = the_pull_request(&app).await;
    assert_eq!(rebuilt, pr, "the rebuilt row equals the incremental one");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(enrichment_calls(&fakes).await.len(), 7, "nothing was fetched again");
    assert_eq!(app.log().await.iter().filter(|e| e.event_type == PullRequestEnriched::TYPE).count(), 1);
    fakes.github.verify().await;
    app.stop().await;
}

async fn a_closed_pr_where_the_agent_never_acted_costs_no_github_call(backend: Backend) {
    // The mention is denied: the agent never acts in the repository.
    let fakes = Fakes::start("read").await;
    mount_pull_request(&fakes, 0..=0).await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    assert_eq!(app.deliver("pull_request", "d-pr-opened", &pull_request_payload("opened")).await.status(), 200);
    assert_eq!(app.deliver("pull_request", "d-pr-closed", &pull_request_payload("closed")).await.status(), 200);
    // A later delivery's rejection shows the process manager is past the closing.
    let mention = comment_payload(9710, "@openhands please fix the typo");
    assert_eq!(app.deliver("issue_comment", "d-pr-denied", &mention).await.status(), 200);
    let started = Instant::now();
    while !app.log().await.iter().any(|e| e.event_type == "TriggerRejected") {
        assert!(started.elapsed() < Duration::from_secs(20), "the mention was rejected");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let db = SqlDb::connect(&app.db.url).await.expect("SQL database");
    let rows = db.query("SELECT COUNT(*) FROM outbox WHERE step = 'enrich_pull_request'", vec![]).await.expect("query");
    assert_eq!(rows[0].get::<u64>(0).expect("a count"), 0, "no enrichment was enqueued");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(enrichment_calls(&fakes).await.is_empty());
    assert!(!app.log().await.iter().any(|e| e.event_type == PullRequestEnriched::TYPE));
    let pr = the_pull_request(&app).await;
    assert_eq!((pr["status"].as_str(), pr["enriched"].as_bool()), (Some("merged"), Some(false)));
    fakes.github.verify().await;
    app.stop().await;
}

async fn a_502_while_enriching_is_retried_into_one_event(backend: Backend) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    fail_reviews(&fakes, 1).await;
    // The retry reads the PR, its commits and review comments again.
    mount_pull_request(&fakes, 1..=2).await;
    let Some(app) = spawn(backend, &fakes).await else { return };
    agent_acts(&app, &fakes).await;
    assert_eq!(app.deliver("pull_request", "d-pr-closed", &pull_request_payload("closed")).await.status(), 200);

    let enriched = wait_for_enrichment(&app).await;
    assert_eq!(enriched, vec![expected_figures()]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = app.log().await;
    let pr_stream = format!("pr-186853002-{PR}");
    let failures: Vec<EnrichmentFailed> = log
        .iter()
        .filter(|e| e.stream == pr_stream && e.event_type == EnrichmentFailed::TYPE)
        .map(|e| EnrichmentFailed::decode(e).expect("decodes"))
        .collect();
    assert_eq!(failures.len(), 1);
    assert!(!log.iter().any(|e| e.event_type == StepFailed::TYPE), "no trigger event is borrowed");
    assert!(failures[0].error.contains("502"), "{}", failures[0].error);
    assert_eq!(log.iter().filter(|e| e.event_type == PullRequestEnriched::TYPE).count(), 1);
    app.stop().await;
}

async fn an_abandoned_enrichment_is_retried_from_the_admin_api_into_one_event(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    // GitHub fails the reviews twice: both attempts, then the step is abandoned.
    fail_reviews(&fakes, 2).await;
    mount_pull_request(&fakes, 1..=3).await;
    let mut flags = fakes.flags();
    flags.extend(["--api-token", TOKEN, "--retry-max-attempts", "2"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn_on(db, &flags).await;
    agent_acts(&app, &fakes).await;
    assert_eq!(app.deliver("pull_request", "d-pr-closed", &pull_request_payload("closed")).await.status(), 200);

    let abandoned: EnrichmentAbandoned = app.first_event().await;
    assert_eq!(abandoned.attempts, 2);
    let subject = abandoned.subject_id;

    // Once GitHub answers again, the admin's retry fetches the figures once.
    let (status, body) = post(&app, &format!("/api/v1/admin/triggers/{subject}/retry")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_for_enrichment(&app).await, vec![expected_figures()]);
    let (status, body) = post(&app, &format!("/api/v1/admin/triggers/{subject}/retry")).await;
    assert_eq!(status, 409, "only an abandoned enrichment is retried: {body}");
    let (status, _) = post(&app, &format!("/api/v1/admin/triggers/{}/retry", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = app.log().await;
    assert_eq!(log.iter().filter(|e| e.event_type == PullRequestEnriched::TYPE).count(), 1);
    assert_eq!(log.iter().filter(|e| e.event_type == EnrichmentRetried::TYPE).count(), 1, "one retry recorded");
    app.stop().await;
}
