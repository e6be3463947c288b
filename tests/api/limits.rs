//! Operators' limits. Daily (`HOOKWISE_MAX_PER_USER_PER_DAY`,
//! `HOOKWISE_MAX_PER_REPO_PER_DAY`): the request one over the limit starts
//! nothing and gets one reply naming the limit and when it resets; the count
//! is read from the log (a restart changes nothing) and a new UTC day, on a
//! clock the test sets, starts again. Running (`HOOKWISE_MAX_RUNNING`,
//! `HOOKWISE_MAX_RUNNING_PER_REPO`): the request over it waits, across a
//! restart, until a conversation ends. `HOOKWISE_MAX_PROACTIVE_PER_PR`: the
//! suggestion over it is not posted. wiremock stands in for GitHub and for
//! the agent runtime.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookwise::events::{DomainEvent, ThreadRequestQueued, TriggerRejected};
use hookwise::sql::SqlDb;
use hookwise::triggers::limits::LimitsClock;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use crate::helpers::{backend_tests, eventually, Backend, TestApp, TestDatabase};
use crate::triggers::{base_payload, body_of, callback, comment_payload, finished_batch, Fakes, CALLBACK_KEY, REPO};

backend_tests!(
    proactive_suggestions_stop_at_their_number_per_pull_request,
    the_global_running_limit_makes_the_next_request_wait_for_a_place,
    the_per_repo_running_limit_makes_the_next_request_wait_for_a_place,
    the_per_user_limit_is_reached_at_its_number_and_resets_at_midnight,
    the_per_repo_limit_is_reached_at_its_number_and_resets_at_midnight
);

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// The V0 runtime's start, answering `conv-1`, `conv-2`, … in turn.
struct NumberedConversations(AtomicUsize);

impl Respond for NumberedConversations {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({"status": "ok", "conversation_id": format!("conv-{n}")}))
    }
}

/// A server on `db` whose daily limits count by `now` (microseconds since the epoch).
async fn spawn(db: TestDatabase, fakes: &Fakes, limit_flag: &str, now: &Arc<AtomicI64>) -> TestApp {
    let mut flags = fakes.flags();
    // Parallel: the requests on issue #1 need not wait for each other to end.
    flags.extend(["--per-thread", "parallel", limit_flag, "2"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let now = now.clone();
    TestApp::spawn_with(db, &flags, move |config| {
        config.process.limits_clock = LimitsClock::from_fn(move || now.load(Ordering::SeqCst));
    })
    .await
}

async fn starts(fakes: &Fakes) -> usize {
    fakes.requests("POST", "/api/conversations").await.len()
}

/// The texts hookwise wrote on #1: comments posted, then edits.
async fn written(fakes: &Fakes) -> Vec<String> {
    let mut requests = fakes.requests("POST", "/issues/1/comments").await;
    requests.extend(fakes.edits().await);
    requests.iter().map(|r| body_of(r)["body"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn limit_rejections(app: &TestApp) -> Vec<TriggerRejected> {
    app.log()
        .await
        .iter()
        .filter(|e| e.event_type == TriggerRejected::TYPE)
        .filter_map(|e| TriggerRejected::decode(e).ok())
        .filter(|r| r.reason == "limit")
        .collect()
}

/// Two requests start; after a restart the third is refused with one reply
/// naming `limit_words` and the next midnight; the next day the fourth starts.
async fn reached_at_its_number_and_reset_at_midnight(backend: Backend, limit_flag: &str, limit_words: &str) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    Mock::given(method("POST"))
        .and(path("/api/conversations"))
        .respond_with(NumberedConversations(AtomicUsize::new(0)))
        .with_priority(1)
        .mount(&fakes.agent)
        .await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    // 2026-12-01T12:00:00Z: the limit resets at 2026-12-02 00:00 UTC.
    let now = Arc::new(AtomicI64::new(1_796_126_400_000_000));
    let app = spawn(db, &fakes, limit_flag, &now).await;
    for (n, comment) in [(1, 101), (2, 102)] {
        let body = comment_payload(comment, "@openhands please fix this");
        assert_eq!(app.deliver("issue_comment", &format!("d-{comment}"), &body).await.status(), 200);
        eventually(Duration::from_secs(20), "the request starts", || async { starts(&fakes).await >= n }).await;
    }
    // The count is the log's: a restart does not forget it.
    let app = spawn(app.stop().await, &fakes, limit_flag, &now).await;
    let body = comment_payload(103, "@openhands and this too");
    assert_eq!(app.deliver("issue_comment", "d-103", &body).await.status(), 200);
    eventually(Duration::from_secs(20), "the over-limit reply", || async {
        written(&fakes).await.iter().any(|text| text.contains(limit_words))
    })
    .await;
    let replies: Vec<String> = written(&fakes).await.into_iter().filter(|t| t.contains(limit_words)).collect();
    assert_eq!(replies.len(), 1, "one reply: {replies:?}");
    assert!(
        replies[0].contains("limit of 2 requests") && replies[0].contains("2026-12-02 00:00 UTC"),
        "{}",
        replies[0]
    );
    let rejections = limit_rejections(&app).await;
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert_eq!(starts(&fakes).await, 2, "the third request started nothing");

    // The next UTC day: the limit has reset.
    now.fetch_add(MICROS_PER_DAY, Ordering::SeqCst);
    let body = comment_payload(104, "@openhands one more");
    assert_eq!(app.deliver("issue_comment", "d-104", &body).await.status(), 200);
    eventually(Duration::from_secs(20), "the next day's request starts", || async { starts(&fakes).await >= 3 }).await;
    assert_eq!(limit_rejections(&app).await.len(), 1);
    app.stop().await;
}

async fn the_per_user_limit_is_reached_at_its_number_and_resets_at_midnight(backend: Backend) {
    reached_at_its_number_and_reset_at_midnight(backend, "--max-per-user-per-day", "HOOKWISE_MAX_PER_USER_PER_DAY")
        .await;
}

async fn the_per_repo_limit_is_reached_at_its_number_and_resets_at_midnight(backend: Backend) {
    reached_at_its_number_and_reset_at_midnight(backend, "--max-per-repo-per-day", "HOOKWISE_MAX_PER_REPO_PER_DAY")
        .await;
}

/// How many joined the running line `line`.
async fn joined(app: &TestApp, line: &str) -> usize {
    app.log().await.iter().filter(|e| e.stream == line && e.event_type == ThreadRequestQueued::TYPE).count()
}

/// With a running limit of 1 the second request joins the line and starts
/// nothing until the first conversation ends; a restart meanwhile keeps its place.
async fn waits_for_a_place(backend: Backend, limit_flag: &str, line: &str) {
    let fakes = Fakes::start("write").await;
    fakes.accept_comments().await;
    Mock::given(method("POST"))
        .and(path("/api/conversations"))
        .respond_with(NumberedConversations(AtomicUsize::new(0)))
        .with_priority(1)
        .mount(&fakes.agent)
        .await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut flags = fakes.flags();
    flags.extend(["--per-thread", "parallel", limit_flag, "1"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn_on(db, &flags).await;
    let first = comment_payload(201, "@openhands please fix this");
    assert_eq!(app.deliver("issue_comment", "d-201", &first).await.status(), 200);
    eventually(Duration::from_secs(20), "the first request starts", || async { starts(&fakes).await >= 1 }).await;
    let second = comment_payload(202, "@openhands and this");
    assert_eq!(app.deliver("issue_comment", "d-202", &second).await.status(), 200);
    eventually(Duration::from_secs(20), "the second request joins the running line", || async {
        joined(&app, line).await >= 2
    })
    .await;
    let app = TestApp::spawn_on(app.stop().await, &flags).await;
    // Once the process manager has handled the join, whatever it decided is in the outbox.
    let sql = SqlDb::connect(&app.db.url).await.expect("SQL database");
    let join_position =
        app.log().await.iter().filter(|e| e.stream == line).map(|e| e.position.0).max().expect("the joins");
    eventually(Duration::from_secs(20), "the process manager handles the join", || async {
        let rows = sql
            .query("SELECT position FROM checkpoints WHERE name = 'process_manager'", vec![])
            .await
            .expect("checkpoints");
        rows.first().and_then(|row| row.get::<u64>(0).ok()).is_some_and(|position| position >= join_position)
    })
    .await;
    let rows =
        sql.query("SELECT COUNT(*) FROM outbox WHERE step = 'start_conversation'", vec![]).await.expect("the outbox");
    assert_eq!(rows[0].get::<u64>(0).expect("a count"), 1, "the second request's start waits for a place");
    assert_eq!(starts(&fakes).await, 1);
    assert_eq!(callback(&app, CALLBACK_KEY, finished_batch("conv-1")).await.status(), 202);
    eventually(Duration::from_secs(20), "the second request starts when the first ends", || async {
        starts(&fakes).await >= 2
    })
    .await;
    app.stop().await;
}

async fn the_global_running_limit_makes_the_next_request_wait_for_a_place(backend: Backend) {
    waits_for_a_place(backend, "--max-running", "running-all").await;
}

async fn the_per_repo_running_limit_makes_the_next_request_wait_for_a_place(backend: Backend) {
    waits_for_a_place(backend, "--max-running-per-repo", "running-repo-186853002").await;
}

/// `HOOKWISE_MAX_PROACTIVE_PER_PR=2`: failed runs on three head commits of
/// pull request #1 get two suggestions; the third is rejected with reason
/// `limit`, silently (nobody asked).
async fn proactive_suggestions_stop_at_their_number_per_pull_request(backend: Backend) {
    let fakes = Fakes::start("write").await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/actions/runs")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"workflow_runs": [{"name": "CI", "status": "completed", "conclusion": "failure"}]}),
            ),
        )
        .mount(&fakes.github)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/{REPO}/pulls/1")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"head": {"ref": "fix"}, "mergeable": true})))
        .mount(&fakes.github)
        .await;
    fakes.accept_comments().await;
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut flags = fakes.flags();
    flags.extend(["--proactive", "true", "--max-proactive-per-pr", "2"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn_on(db, &flags).await;
    let failed_run = |sha: &str| {
        let mut run = base_payload();
        run["action"] = json!("completed");
        run["workflow_run"] = json!({"name": "CI", "head_sha": sha, "head_branch": "fix", "conclusion": "failure",
            "pull_requests": [{"number": 1, "head": {"ref": "fix", "sha": sha}}]});
        serde_json::to_vec(&run).expect("JSON")
    };
    for (n, sha) in [(1, "aaa"), (2, "bbb")] {
        assert_eq!(app.deliver("workflow_run", &format!("d-run-{sha}"), &failed_run(sha)).await.status(), 200);
        fakes.wait_for("POST", "/issues/1/comments", n).await;
    }
    assert_eq!(app.deliver("workflow_run", "d-run-ccc", &failed_run("ccc")).await.status(), 200);
    eventually(Duration::from_secs(20), "the third suggestion is rejected", || async {
        !limit_rejections(&app).await.is_empty()
    })
    .await;
    let rejections = limit_rejections(&app).await;
    assert_eq!(rejections.len(), 1, "{rejections:?}");
    assert!(rejections[0].message.contains("HOOKWISE_MAX_PROACTIVE_PER_PR"), "{}", rejections[0].message);
    // The rejection took the place of the suggestion's step: nothing more is posted.
    assert_eq!(fakes.requests("POST", "/issues/1/comments").await.len(), 2);
    app.stop().await;
}
