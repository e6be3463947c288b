//! The dashboard at `/`: its headers, the endpoints it reads that were added
//! for it (`/status`, `/stats/pull-requests/daily`), and the page itself in a
//! real headless Chromium (Playwright for Python, `tests/browser/dashboard.py`)
//! against a server fed corpus deliveries and a whole label trigger through
//! the GitHub and agent stand-ins.
//!
//! The browser test runs on SQLite only: the page reads the same `/api/v1`
//! on both backends, and those endpoints' backend behaviour is tested on both
//! (here and in `query_api.rs`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{backend_tests, eventually, payload_examples, Backend, TestApp, TestDatabase, TEST_SECRET};
use crate::triggers::{base_payload, callback, finished_batch, Fakes, CALLBACK_KEY, REPO};

backend_tests!(the_status_and_daily_pull_request_figures_are_in_the_api);

const TOKEN: &str = "dashboard-test-token";

/// Corpus deliveries the page must list, as `(event, file under payload-examples)`.
const CORPUS: &[(&str, &str)] = &[
    ("ping", "ping/payload.json"),
    ("issues", "issues/assigned.payload.json"),
    ("issue_comment", "issue_comment/created.payload.json"),
    ("push", "push/payload.json"),
    ("release", "release/created.payload.json"),
    ("star", "star/created.payload.json"),
    ("watch", "watch/started.payload.json"),
];

fn rfc3339(offset: time::Duration) -> String {
    (time::OffsetDateTime::now_utc() + offset)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a formattable time")
}

/// A pull request merged `merged_days_ago` days ago from branch `head`.
fn merged_pull_request(number: u64, head: &str, merged_days_ago: i64) -> Vec<u8> {
    let mut payload = base_payload();
    let merged_at = rfc3339(time::Duration::days(-merged_days_ago));
    payload["action"] = json!("closed");
    payload["number"] = json!(number);
    payload["pull_request"] = json!({
        "number": number, "title": format!("Fix #{number}"), "state": "closed", "merged": true,
        "created_at": rfc3339(time::Duration::days(-merged_days_ago - 1)), "merged_at": merged_at,
        "closed_at": merged_at, "user": {"login": "Codertocat"}, "head": {"ref": head}, "body": "",
    });
    serde_json::to_vec(&payload).expect("JSON")
}

/// PR `number` from branch `head`, opened a day ago and still open.
fn opened_pull_request(number: u64, head: &str) -> Vec<u8> {
    let mut payload = base_payload();
    payload["action"] = json!("opened");
    payload["number"] = json!(number);
    payload["pull_request"] = json!({
        "number": number, "title": format!("Fix #{number}"), "state": "open", "merged": false,
        "created_at": rfc3339(time::Duration::days(-1)), "merged_at": null, "closed_at": null,
        "user": {"login": "Codertocat"}, "head": {"ref": head}, "body": "",
    });
    serde_json::to_vec(&payload).expect("JSON")
}

/// One commit by the agent pushed to `branch`.
fn agent_push(branch: &str) -> Vec<u8> {
    agent_commits(branch, 1)
}

/// `count` commits by the agent pushed to `branch`.
fn agent_commits(branch: &str, count: usize) -> Vec<u8> {
    let mut payload = base_payload();
    payload["ref"] = json!(format!("refs/heads/{branch}"));
    let commits: Vec<Value> = (0..count)
        .map(|i| json!({"id": format!("{branch}-{i}"), "author": {"name": "openhands", "username": "openhands-agent"}}))
        .collect();
    payload["commits"] = json!(commits);
    serde_json::to_vec(&payload).expect("JSON")
}

/// Two weeks of merged pull requests, some with agent commits, for a chart
/// worth looking at in the screenshot: `(number, days ago, agent commits)`.
async fn deliver_two_weeks_of_pull_requests(app: &TestApp) {
    for (number, days_ago, commits) in
        [(20, 12, 2), (21, 10, 0), (22, 8, 1), (23, 6, 3), (24, 6, 0), (25, 4, 0), (26, 3, 2)]
    {
        let head = format!("branch-{number}");
        if commits > 0 {
            let opened = opened_pull_request(number, &head);
            assert_eq!(app.deliver("pull_request", &format!("pr-{number}-opened"), &opened).await.status(), 200);
            let pushed = agent_commits(&head, commits);
            assert_eq!(app.deliver("push", &format!("pr-{number}-push"), &pushed).await.status(), 200);
        }
        let merged = merged_pull_request(number, &head, days_ago);
        assert_eq!(app.deliver("pull_request", &format!("pr-{number}-merged"), &merged).await.status(), 200);
    }
}

/// PR #7 (one agent commit) merged today, PR #8 (none) merged yesterday.
async fn deliver_pull_requests(app: &TestApp) {
    for (event, delivery, body) in [
        ("pull_request", "pr-8-merged", merged_pull_request(8, "by-hand", 1)),
        ("pull_request", "pr-7-opened", opened_pull_request(7, "openhands-fix-7")),
        ("push", "pr-7-agent-push", agent_push("openhands-fix-7")),
        ("pull_request", "pr-7-merged", merged_pull_request(7, "openhands-fix-7", 0)),
    ] {
        assert_eq!(app.deliver(event, delivery, &body).await.status(), 200, "{delivery}");
    }
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response =
        app.http.get(app.url(path)).bearer_auth(TOKEN).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("JSON")
}

async fn the_status_and_daily_pull_request_figures_are_in_the_api(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = TestApp::spawn_on(db, &["--api-token", TOKEN]).await;

    let page = app.http.get(app.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers().get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"));
    assert_eq!(page.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
    let html = page.text().await.expect("HTML");
    assert!(html.contains(r#"<script src="/dashboard/app.js""#), "{html}");
    assert!(!html.contains("<script>"), "no inline script");
    for (asset, content_type) in [("/dashboard/app.js", "text/javascript"), ("/dashboard/app.css", "text/css")] {
        let response = app.http.get(app.url(asset)).send().await.expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
        let served = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(served.starts_with(content_type), "{asset}: {served}");
    }

    // The API's token guards the data, not the page.
    let refused = app.http.get(app.url("/api/v1/status")).bearer_auth("wrong").send().await.expect("status");
    assert_eq!(refused.status(), 401);

    deliver_pull_requests(&app).await;
    let merged = |daily: &Value| -> u64 {
        daily["days"].as_array().map_or(0, |days| {
            days.iter()
                .map(|d| d["merged_with_agent"].as_u64().unwrap_or(0) + d["merged_without_agent"].as_u64().unwrap_or(0))
                .sum()
        })
    };
    eventually(Duration::from_secs(20), "both merged PRs in the daily figures", || async {
        merged(&get_json(&app, "/api/v1/stats/pull-requests/daily").await) == 2
    })
    .await;
    let daily = get_json(&app, "/api/v1/stats/pull-requests/daily").await;
    let days = daily["days"].as_array().expect("days");
    let today = &rfc3339(time::Duration::ZERO)[..10];
    let yesterday = &rfc3339(time::Duration::days(-1))[..10];
    let day = |d: &str| days.iter().find(|x| x["day"] == d).cloned().unwrap_or_else(|| panic!("no {d} in {daily}"));
    assert_eq!(day(today)["merged_with_agent"], 1, "{daily}");
    assert_eq!(day(today)["merged_without_agent"], 0, "{daily}");
    assert_eq!(day(today)["agent_commits"], 1, "{daily}");
    assert_eq!(day(yesterday)["merged_without_agent"], 1, "{daily}");
    assert_eq!(day(yesterday)["merged_with_agent"], 0, "{daily}");
    let ordered: Vec<&str> = days.iter().filter_map(|d| d["day"].as_str()).collect();
    let mut sorted = ordered.clone();
    sorted.sort_unstable();
    assert_eq!(ordered, sorted, "oldest first");
    // A window that ends before today leaves today out.
    let until = get_json(&app, &format!("/api/v1/stats/pull-requests/daily?until={today}T00:00:00Z")).await;
    assert!(until["days"].as_array().is_some_and(|d| d.iter().all(|x| x["day"] != today)), "{until}");
    let bad = app
        .http
        .get(app.url("/api/v1/stats/pull-requests/daily?since=yesterday"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);

    eventually(Duration::from_secs(10), "this instance takes the background lease", || async {
        get_json(&app, "/api/v1/status").await["holds_background_lease"] == true
    })
    .await;
    let status = get_json(&app, "/api/v1/status").await;
    assert!(status["head"].as_u64().is_some_and(|h| h >= 3), "{status}");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["github_web_url"], "https://github.com", "from the default GITHUB_API_URL: {status}");
    assert!(status["background_lease_holder"].as_str().is_some_and(|h| !h.is_empty()), "{status}");
    app.stop().await;
}

/// The browser and Playwright that `scripts/test` prepares, or `None` (a
/// skip) outside CI when they are missing; under `CI=true` their absence fails.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let python = std::env::var_os("HOOKWISE_TEST_BROWSER_PYTHON").map(PathBuf::from);
    let chromium = std::env::var_os("HOOKWISE_TEST_CHROMIUM").map(PathBuf::from);
    match (python, chromium) {
        (Some(python), Some(chromium)) if python.exists() && chromium.exists() => Some((python, chromium)),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("HOOKWISE_TEST_BROWSER_PYTHON and HOOKWISE_TEST_CHROMIUM must name Playwright's Python and chromium (scripts/test prepares them)")
        }
        _ => {
            eprintln!("skipped: no browser (run through scripts/test, which prepares chromium and Playwright)");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let Some((python, chromium)) = browser() else { return };
    let Some(corpus) = payload_examples() else { return };
    if tokio::time::timeout(Duration::from_secs(240), dashboard_in_a_browser(python, chromium, corpus)).await.is_err() {
        panic!("the browser test timed out");
    }
}

async fn dashboard_in_a_browser(python: PathBuf, chromium: PathBuf, corpus: PathBuf) {
    let fakes = Fakes::start("maintain").await;
    fakes.accept_comments().await;
    let db = TestDatabase::create(Backend::Sqlite).await.expect("SQLite is always there");
    let mut flags = fakes.flags();
    flags.extend(["--api-token".to_owned(), TOKEN.to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn_on(db, &flags).await;

    // Older than the deliveries the page must list among its newest 15.
    deliver_two_weeks_of_pull_requests(&app).await;
    let mut deliveries = Vec::new();
    for (event, file) in CORPUS {
        let body = std::fs::read(corpus.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let delivery = format!("corpus-{}", file.replace(['/', '.', '_'], "-"));
        let answer = app.deliver(event, &delivery, &body).await;
        let status = answer.status();
        assert_eq!(status, 200, "{file}: {}", answer.text().await.unwrap_or_default());
        deliveries.push(delivery);
    }
    deliver_pull_requests(&app).await;

    // A label asks for the agent; the agent finishes; the summary is posted.
    let mut payload = base_payload();
    payload["action"] = json!("labeled");
    payload["label"] = json!({"name": "openhands"});
    payload["issue"] = json!({"number": 1, "title": "Spelling error", "updated_at": "2019-05-15T15:20:21Z"});
    let body = serde_json::to_vec(&payload).expect("JSON");
    assert_eq!(app.deliver("issues", "label-delivery", &body).await.status(), 200);
    deliveries.push("label-delivery".to_owned());
    fakes.wait_for("POST", "/issues/1/comments", 1).await;
    let finished = finished_batch("conv-1");
    assert_eq!(callback(&app, CALLBACK_KEY, finished).await.status(), 202);
    // The status comment is edited into the result.
    fakes.final_word().await;
    let finished_trigger = |page: Value| -> Option<String> {
        let items = page["items"].as_array()?;
        items.iter().find(|c| c["status"] == "finished").and_then(|c| c["trigger_id"].as_str()).map(str::to_owned)
    };
    eventually(Duration::from_secs(20), "the conversation is finished in the read model", || async {
        finished_trigger(get_json(&app, "/api/v1/conversations").await).is_some()
    })
    .await;
    let trigger_id = finished_trigger(get_json(&app, "/api/v1/conversations").await).expect("a finished trigger");
    // The page reads read models: wait until every one has caught up.
    eventually(Duration::from_secs(20), "the read models catch up", || async {
        get_json(&app, "/api/v1/admin/read-models").await.as_array().is_some_and(|m| m.iter().all(|r| r["lag"] == 0))
    })
    .await;

    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard");
    std::fs::create_dir_all(&out_dir).expect("target/dashboard");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let mut command = std::process::Command::new(&python);
    command
        .arg(&script)
        .args(["--url", &app.url("")])
        .args(["--chromium", &chromium.to_string_lossy()])
        .args(["--token", TOKEN, "--wrong-token", "not-the-token"])
        .args(["--webhook-secret", TEST_SECRET])
        .args(["--deliveries", &deliveries.join(",")])
        .args(["--trigger", &trigger_id, "--status", "finished"])
        .args(["--audit-kind", "trigger_detected"])
        .args(["--out", &out_dir.to_string_lossy()]);
    // The script bounds each of its waits (20 s), so it ends by itself.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the browser script's thread")
        .expect("the browser script runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser script failed ({}):\n{stderr}", output.status);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("the script's report is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
    });

    assert_eq!(report["wrong_token_refused"], true, "{report}");
    assert_eq!(report["wrong_token_stored"], Value::Null, "a refused token is dropped: {report}");
    assert_eq!(report["token_in_session_storage"], true, "{report}");
    assert_eq!(report["token_in_local_storage"], false, "the token stays in the tab's session: {report}");
    let listed: Vec<&str> =
        report["deliveries_listed"].as_array().expect("listed").iter().filter_map(Value::as_str).collect();
    for delivery in &deliveries {
        assert!(listed.contains(&delivery.as_str()), "{delivery} is not on the page: {report}");
    }
    assert!(listed.contains(&"live-ping"), "a delivery made after the page loaded shows up without a reload: {report}");
    assert_eq!(report["conversation_row_status"], "finished", "{report}");
    // Its GitHub thread (on the GitHub the server is configured with) and the agent's conversation.
    let thread = format!("{}/{REPO}/issues/1", fakes.github.uri());
    assert_eq!(report["conversation_links"], json!([thread, "https://agent.example/c/conv-1"]), "{report}");
    assert_eq!(report["conversation_page_status"], "finished", "{report}");
    assert_eq!(report["conversation_hash"], format!("#/conversations/{trigger_id}"), "a deep link: {report}");
    assert_eq!(report["conversation_deep_link_status"], "finished", "{report}");
    assert!(report["chart_elements"].as_u64().is_some_and(|n| n >= 3), "bars and a point: {report}");
    let before: Vec<&str> =
        report["audit_kinds_before"].as_array().expect("kinds").iter().filter_map(Value::as_str).collect();
    let after: Vec<&str> =
        report["audit_kinds_after"].as_array().expect("kinds").iter().filter_map(Value::as_str).collect();
    assert!(before.iter().any(|k| *k != "trigger_detected"), "the unfiltered audit log has other kinds: {report}");
    assert!(!after.is_empty() && after.iter().all(|k| *k == "trigger_detected"), "the filter narrows it: {report}");
    assert!(after.len() < before.len(), "{report}");
    assert_eq!(report["audit_hash"], "#/audit?kind=trigger_detected", "the filter is in the link: {report}");
    assert_eq!(report["phone_overflow_px"], 0, "no horizontal scrolling at 390 px: {report}");
    assert_eq!(report["console_errors"], json!([]), "{report}");
    for shot in ["dashboard.png", "dashboard-phone.png"] {
        assert!(std::fs::metadata(out_dir.join(shot)).is_ok_and(|m| m.len() > 10_000), "{shot} was saved");
    }
    app.stop().await;
}
