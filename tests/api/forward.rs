//! Forwarding to a real HTTP sink through outages: every event arrives, in
//! order, each batch at most once after de-duplication by `X-Hookwise-Batch`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{backend_tests, eventually, sign, Backend, TestApp, TestDatabase, TEST_SECRET};
use crate::test_sink::{Mode, TestSink};

backend_tests!(
    forwarding_survives_outages_in_order,
    forwarder_resumes_after_sigkill_and_flushes_on_sigterm,
    the_sinks_api_requires_the_bearer_token
);

pub const FORWARD_SECRET: &str = "test-forward-secret";
const MAX_BATCH_BYTES: usize = 8 * 1024;
const MAX_BATCH_AGE: Duration = Duration::from_millis(400);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);

fn issue_comment(n: usize, padding: usize) -> Vec<u8> {
    format!(
        r#"{{"action":"created","installation":{{"id":9}},"comment":{{"id":{n},"body":"{}"}}}}"#,
        "x".repeat(padding)
    )
    .into_bytes()
}

async fn sinks(app: &TestApp) -> serde_json::Value {
    let response = app.http.get(app.url("/api/v1/sinks")).send().await.expect("sinks answers");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

async fn forwarding_survives_outages_in_order(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let mut sink = TestSink::start(FORWARD_SECRET).await;
    let forward = format!("lake={}", sink.url());
    // A second sink whose filter keeps none of these events: nothing is sent, its checkpoint still moves.
    let mut filtered_sink = TestSink::start(FORWARD_SECRET).await;
    let filtered = format!("filtered={}", filtered_sink.url());
    let args = ["--forward", &forward, "--forward", &filtered, "--forward-secret", FORWARD_SECRET];
    let app = TestApp::spawn_with(db, &args, |config| {
        config.forward.sinks[1].event_types = Some(vec!["SomeOtherEvent".to_owned()]);
        config.forward.max_batch_bytes = MAX_BATCH_BYTES;
        config.forward.max_batch_age = MAX_BATCH_AGE;
        config.forward.request_timeout = REQUEST_TIMEOUT;
        config.forward.min_backoff = Duration::from_millis(20);
        config.forward.max_backoff = Duration::from_millis(200);
        config.forward.failing_after = 2;
    })
    .await;
    let mut sent = 0;
    let mut deliver = |padding: usize| {
        sent += 1;
        let (n, app) = (sent, &app);
        async move {
            let response = app.deliver("issue_comment", &format!("fwd-{n}"), &issue_comment(n, padding)).await;
            assert_eq!(response.status(), 200);
        }
    };

    // A steady trickle, one event per 100 ms for 2 s: batches still leave
    // within the age limit of their oldest event (never postponed).
    let trickle_started = Instant::now();
    for _ in 0..20 {
        deliver(10).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = sink.received();
    assert!(!first.is_empty(), "a batch left during the trickle");
    let first_at = first[0].at.duration_since(trickle_started);
    assert!(first_at < MAX_BATCH_AGE + Duration::from_millis(700), "first batch after {first_at:?}");
    assert!(first.len() >= 2, "the trickle was cut by age into several batches, got {}", first.len());

    // A burst of ~1 KiB events: cut by size.
    for _ in 0..30 {
        deliver(1000).await;
    }
    eventually(Duration::from_secs(10), "the burst arrives", || async { sink.taken_positions().len() == 50 }).await;

    // While the sink is healthy, no batch's oldest event waited much past the age limit.
    for batch in sink.taken_batches() {
        let events: Vec<serde_json::Value> = serde_json::from_slice(&batch.body).expect("JSON array");
        let oldest = events[0]["recorded_at"].as_str().expect("recorded_at");
        let oldest =
            time::OffsetDateTime::parse(oldest, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
        let waited = batch.wall - oldest;
        assert!(waited < MAX_BATCH_AGE + Duration::from_millis(700), "a batch's oldest event waited {waited}");
    }

    // Outage 1: the sink answers 500.
    sink.set_mode(Mode::Fail);
    for _ in 0..5 {
        deliver(10).await;
    }
    eventually(Duration::from_secs(10), "the sink is marked failing", || async {
        let sinks = sinks(&app).await;
        sinks["sinks"][0]["state"] == "failing"
    })
    .await;
    let status = sinks(&app).await;
    let lake = &status["sinks"][0];
    assert_eq!(lake["name"], "lake");
    assert_eq!(lake["position"], 50, "the failing sink keeps its place");
    assert_eq!(lake["lag"], 5);
    assert_eq!(lake["last_error"], "the sink answered HTTP 500");

    // Outage 2: the port is closed.
    sink.stop().await;
    for _ in 0..5 {
        deliver(10).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sinks(&app).await["sinks"][0]["last_error"], "could not connect to the sink");

    // Outage 3: the sink takes batches but answers after the timeout.
    sink.restart().await;
    sink.set_mode(Mode::SlowAccept(REQUEST_TIMEOUT * 3));
    for _ in 0..5 {
        deliver(10).await;
    }
    eventually(Duration::from_secs(10), "a timeout is reported", || async {
        sinks(&app).await["sinks"][0]["last_error"].as_str().is_some_and(|e| e.starts_with("no answer within"))
    })
    .await;

    // Recovery.
    sink.set_mode(Mode::Accept);
    eventually(Duration::from_secs(15), "the sink catches up", || async {
        let sinks = sinks(&app).await;
        sinks["sinks"][0]["lag"] == 0 && sinks["sinks"][0]["state"] == "healthy"
    })
    .await;

    let positions = sink.taken_positions();
    let expected: Vec<u64> = (1..=sent as u64).collect();
    assert_eq!(positions, expected, "every event arrives once, in order, after de-duplication by batch id");
    let received = sink.received();
    assert!(received.iter().all(|r| r.signature_valid), "every batch is signed with the forward secret");
    assert!(received.len() > sink.taken_batches().len(), "the outages caused retries");
    for batch in sink.taken_batches() {
        let events: Vec<serde_json::Value> = serde_json::from_slice(&batch.body).expect("JSON array");
        assert!(
            batch.body.len() <= MAX_BATCH_BYTES || events.len() == 1,
            "a batch of {} bytes exceeds the size limit",
            batch.body.len()
        );
    }
    // The events carry the log's fields and the GitHub body.
    let events = sink.taken_events();
    assert_eq!(events[0]["type"], "WebhookReceived");
    assert_eq!(events[0]["stream"], "delivery-fwd-1");
    assert_eq!(events[0]["schema_version"], 1);
    assert_eq!(events[0]["data"]["delivery_id"], "fwd-1");
    assert_eq!(events[0]["payload"]["comment"]["id"], 1);
    assert!(events[0]["recorded_at"].as_str().is_some_and(|t| t.ends_with('Z')));

    let status = sinks(&app).await;
    let filtered = &status["sinks"][1];
    assert_eq!(filtered["name"], "filtered");
    assert_eq!((filtered["position"].as_u64(), filtered["lag"].as_u64()), (Some(sent as u64), Some(0)));
    assert!(filtered_sink.received().is_empty(), "the filter kept every event from the filtered sink");
    filtered_sink.stop().await;

    app.stop().await;
    sink.stop().await;
}

/// Starts `hookwise serve` forwarding to `sink_url`; returns it with its address.
pub fn start_server(database_url: &str, sink_url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("GITHUB_APP_WEBHOOK_SECRET", TEST_SECRET)
        .env("HOOKWISE_BIND", "127.0.0.1:0")
        .env("HOOKWISE_FORWARD", format!("main={sink_url}"))
        .env("HOOKWISE_FORWARD_SECRET", FORWARD_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the hookwise binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("reading the listening line");
    let base =
        line.trim().strip_prefix("hookwise listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, base.to_owned())
}

pub async fn post_delivery(http: &reqwest::Client, base: &str, n: usize) {
    let body = issue_comment(n, 10);
    let response = http
        .post(format!("{base}/integration/github/events"))
        .header("content-type", "application/json")
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", format!("kill-{n}"))
        .header("x-hub-signature-256", sign(TEST_SECRET, &body))
        .body(body)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 200);
}

async fn forwarder_resumes_after_sigkill_and_flushes_on_sigterm(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let sink = TestSink::start(FORWARD_SECRET).await;
    let http = reqwest::Client::new();
    let (mut child, base) = start_server(&db.url, &sink.url());

    // 5 events arrive (the default 5 s age limit applies).
    for n in 1..=5 {
        post_delivery(&http, &base, n).await;
    }
    eventually(Duration::from_secs(10), "the first batch", || async { sink.taken_positions().len() == 5 }).await;

    // Outage; 5 more events; killed mid-outage, after a failed attempt.
    sink.set_mode(Mode::Fail);
    for n in 6..=10 {
        post_delivery(&http, &base, n).await;
    }
    eventually(Duration::from_secs(10), "a failed attempt", || async { sink.received().iter().any(|r| !r.taken) })
        .await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the child");

    // Restarted after the sink recovered: resumes from the checkpoint (5).
    sink.set_mode(Mode::Accept);
    let (mut child, base) = start_server(&db.url, &sink.url());
    eventually(Duration::from_secs(15), "the rest after the restart", || async { sink.taken_positions().len() == 10 })
        .await;
    assert_eq!(sink.taken_positions(), (1..=10).collect::<Vec<u64>>());
    let starts_at_one = sink.received().iter().filter(|r| r.body.starts_with(br#"[{"position":1,"#)).count();
    assert_eq!(starts_at_one, 1, "the restart resumed from the checkpoint instead of the start");

    // SIGTERM right after 3 more deliveries: they are flushed, not left to the 5 s timer.
    for n in 11..=13 {
        post_delivery(&http, &base, n).await;
    }
    let pid = child.id().to_string();
    let terminated = Command::new("kill").args(["-TERM", &pid]).status().expect("sending SIGTERM");
    assert!(terminated.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("wait");
    assert!(exit.success(), "graceful exit, got {exit:?}");
    assert_eq!(sink.taken_positions(), (1..=13).collect::<Vec<u64>>(), "the shutdown flushed the last events");
}

async fn the_sinks_api_requires_the_bearer_token(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let app = TestApp::spawn_on(db, &["--api-token", "the-token"]).await;
    for presented in [None, Some("Bearer wrong"), Some("the-token")] {
        let mut request = app.http.get(app.url("/api/v1/sinks"));
        if let Some(value) = presented {
            request = request.header("authorization", value);
        }
        let response = request.send().await.expect("answers");
        assert_eq!(response.status(), 401, "{presented:?}");
        let body: serde_json::Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], "unauthorized");
    }
    let response = app.http.get(app.url("/api/v1/sinks")).bearer_auth("the-token").send().await.expect("answers");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(body["sinks"], serde_json::json!([]));
    app.stop().await;
}
