//! Reconciliation against a fake GitHub deliveries API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookwise::events::{DomainEvent, ReconciliationCompleted};
use hookwise::github::client::{AppCredentials, GitHubClient};
use hookwise::reconcile::{reconcile, DeliveriesClient, ReconcileOptions};
use hookwise::store::{ExpectedVersion, NewEvent};
use serde_json::json;
use wiremock::matchers::{method, path, path_regex, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{backend_tests, read_whole_log, Backend, TestApp, TestDatabase};

backend_tests!(
    reconcile_redelivers_what_never_arrived,
    a_failed_listing_is_recorded_with_its_error,
    the_reconcile_command_and_the_periodic_task_run_against_github
);

const APP_ID: &str = "4242";

fn key_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A client for the fake GitHub, signing with the test App key.
fn deliveries_client(github: &MockServer) -> DeliveriesClient {
    let pem = std::fs::read_to_string(key_path("test-github-app-key.pem")).expect("test key");
    let credentials = AppCredentials::parse(APP_ID, &pem).expect("a valid key");
    DeliveriesClient::new(Arc::new(GitHubClient::new(&github.uri(), Some(credentials))))
}

/// Matches requests carrying a valid App JWT: RS256, signed by the test key, issued by the test App.
struct ValidAppJwt;

impl wiremock::Match for ValidAppJwt {
    fn matches(&self, request: &wiremock::Request) -> bool {
        let Some(token) = request.headers.get("authorization").and_then(|v| v.to_str().ok()) else { return false };
        let Some(token) = token.strip_prefix("Bearer ") else { return false };
        let public = std::fs::read(key_path("test-github-app-key.pub.pem")).expect("test public key");
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).expect("a public key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[APP_ID]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).is_ok()
    }
}

fn ago(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formatting")
}

fn attempt(id: u64, guid: &str, seconds_ago: i64, status_code: u16) -> serde_json::Value {
    json!({"id": id, "guid": guid, "delivered_at": ago(seconds_ago), "redelivery": false, "duration": 0.1,
           "status": if status_code == 200 { "OK" } else { "failed" }, "status_code": status_code,
           "event": "issues", "action": "opened", "installation_id": 9, "repository_id": 7})
}

async fn reconcile_redelivers_what_never_arrived(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    // Installs the recorder before the run counts anything.
    hookwise::metrics::handle();
    let store = db.open_store().await;
    let github = MockServer::start().await;

    // Already in the log although GitHub saw it fail (our answer was lost).
    let present = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "WebhookReceived".into(),
        schema_version: 1,
        data: b"{}".to_vec(),
        payload: None,
    };
    store.append("delivery-guid-present", ExpectedVersion::NoStream, vec![present]).await.expect("append");

    // Page 1 (newest first): several attempts per GUID.
    let page1 = json!([
        attempt(15, "guid-retried", 100, 502),  // newest failed attempt of guid-retried
        attempt(14, "guid-ok-later", 200, 200), // guid-ok-later succeeded on its second attempt
        attempt(13, "guid-present", 300, 0),
        attempt(12, "guid-retried", 400, 500),
    ]);
    let page2 = json!([
        attempt(11, "guid-ok-later", 500, 500),
        attempt(10, "guid-limited", 600, 0),
        attempt(9, "guid-too-old", 4 * 24 * 3600, 0),
    ]);
    let next = format!("<{}/app/hook/deliveries?per_page=100&cursor=p2>; rel=\"next\"", github.uri());
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .and(query_param_is_missing("cursor"))
        .and(ValidAppJwt)
        .respond_with(ResponseTemplate::new(200).set_body_json(page1).insert_header("link", next.as_str()))
        .expect(1)
        .mount(&github)
        .await;
    let next = format!("<{}/app/hook/deliveries?per_page=100&cursor=p3>; rel=\"next\"", github.uri());
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .and(query_param("cursor", "p2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page2).insert_header("link", next.as_str()))
        .expect(1)
        .mount(&github)
        .await;
    // Page 2 reached the window's edge: page 3 is never asked for.
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .and(query_param("cursor", "p3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(0)
        .mount(&github)
        .await;
    // A GUID is one delivery whatever hook carried it: no attempt's detail is asked for.
    Mock::given(method("GET"))
        .and(path_regex(r"^/app/hook/deliveries/\d+$"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&github)
        .await;
    // guid-retried: its newest attempt is redelivered, once.
    Mock::given(method("POST"))
        .and(path("/app/hook/deliveries/15/attempts"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&github)
        .await;
    // guid-limited: a 429 first, honoured, then accepted.
    Mock::given(method("POST"))
        .and(path("/app/hook/deliveries/10/attempts"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/app/hook/deliveries/10/attempts"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&github)
        .await;
    // Nothing else is redelivered.
    for id in [14, 13, 12, 11, 9] {
        Mock::given(method("POST"))
            .and(path(format!("/app/hook/deliveries/{id}/attempts")))
            .respond_with(ResponseTemplate::new(202))
            .expect(0)
            .mount(&github)
            .await;
    }

    let client = deliveries_client(&github);
    let options = ReconcileOptions { redelivery_spacing: Duration::from_millis(50), ..ReconcileOptions::default() };
    let started = Instant::now();
    let report = reconcile(store.as_ref(), &client, &options).await.expect("the run succeeds");
    assert!(started.elapsed() >= Duration::from_secs(1), "the 429's Retry-After was honoured");

    assert_eq!(report.attempts_listed, 6, "the attempt outside the window is not counted");
    assert_eq!(report.deliveries, 4);
    assert_eq!(report.already_in_log, 1);
    assert_eq!(report.missing, 2);
    assert_eq!(report.redelivered, 2);
    assert_eq!(report.failed, 0);
    assert_eq!(report.error, None);

    // The run is in the log.
    let log = read_whole_log(store.as_ref()).await;
    let recorded = log.iter().find(|e| e.stream == "reconcile").expect("the run is recorded");
    assert_eq!(ReconciliationCompleted::decode(recorded).expect("decodes"), report);

    let rendered = hookwise::metrics::render();
    assert!(rendered.contains("hookwise_reconcile_runs_total{outcome=\"completed\"}"), "{rendered}");
    github.verify().await;
    store.close().await;
}

async fn a_failed_listing_is_recorded_with_its_error(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let store = db.open_store().await;
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&github)
        .await;
    let client = deliveries_client(&github);
    let error = reconcile(store.as_ref(), &client, &ReconcileOptions::default()).await.expect_err("the run fails");
    assert!(error.to_string().starts_with("GET /app/hook/deliveries: GitHub answered 502"), "{error}");
    let log = read_whole_log(store.as_ref()).await;
    let recorded = ReconciliationCompleted::decode(&log[0]).expect("the failed run is recorded");
    assert_eq!(recorded.error, Some(error.to_string()));
    assert_eq!((recorded.deliveries, recorded.redelivered), (0, 0));
    store.close().await;
}

async fn the_reconcile_command_and_the_periodic_task_run_against_github(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let github = MockServer::start().await;
    // One delivery that never arrived.
    let listed = attempt(77, "guid-cli", 60, 0);
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .and(ValidAppJwt)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([listed])))
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/app/hook/deliveries/77/attempts"))
        .and(ValidAppJwt)
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(2)
        .mount(&github)
        .await;

    // `hookwise reconcile --since 1h`.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"));
    command
        .args(["reconcile", "--since", "1h"])
        .env("DATABASE_URL", &db.url)
        .env("GITHUB_APP_ID", APP_ID)
        .env("GITHUB_APP_PRIVATE_KEY_PATH", key_path("test-github-app-key.pem"))
        .env("GITHUB_API_URL", github.uri())
        .env("RUST_LOG", "warn");
    let output = tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!((report["missing"].as_u64(), report["redelivered"].as_u64()), (Some(1), Some(1)));
    assert_eq!(report["since_seconds"], 3600);

    // The periodic task runs once at start.
    let uri = github.uri();
    let key = key_path("test-github-app-key.pem");
    let args = [
        "--reconcile-interval",
        "1h",
        "--github-app-id",
        APP_ID,
        "--github-app-private-key-path",
        &key,
        "--github-api-url",
        &uri,
    ];
    let app = TestApp::spawn_on(db, &args).await;
    let started = Instant::now();
    loop {
        let runs = app.log().await.into_iter().filter(|e| e.stream == "reconcile").count();
        if runs == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the periodic task ran at start ({runs} runs)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
    github.verify().await;
}
