//! Reconciliation against a fake GitHub deliveries API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hookwise::events::{DomainEvent, ReconciliationCompleted};
use hookwise::reconcile::{reconcile, AppJwtSource, DeliveriesClient, ReconcileOptions};
use hookwise::store::{ExpectedVersion, NewEvent};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{backend_tests, read_whole_log, Backend, TestDatabase};

backend_tests!(reconcile_redelivers_what_never_arrived, a_failed_listing_is_recorded_with_its_error);

struct FixedJwt;

#[async_trait]
impl AppJwtSource for FixedJwt {
    async fn app_jwt(&self) -> Result<String, String> {
        Ok("test-app-jwt".to_owned())
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
    let hook_header = ("x-github-hook-id", "42");

    // Already in the log although GitHub saw it fail (our answer was lost).
    let present = NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "WebhookReceived".into(),
        schema_version: 1,
        data: b"{}".to_vec(),
        payload: None,
    };
    store.append("delivery-42-guid-present", ExpectedVersion::NoStream, vec![present]).await.expect("append");

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
        .and(header("authorization", "Bearer test-app-jwt"))
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
    // The listing has no hook id: it is read from an attempt's request headers.
    for id in [15, 13, 10] {
        Mock::given(method("GET"))
            .and(path(format!("/app/hook/deliveries/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": id, "request": {"headers": {"X-GitHub-Hook-ID": hook_header.1}, "payload": {}}
            })))
            .mount(&github)
            .await;
    }
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

    let client =
        DeliveriesClient::new(reqwest::Client::new(), github.uri().parse().expect("mock URL"), Arc::new(FixedJwt));
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
    let client =
        DeliveriesClient::new(reqwest::Client::new(), github.uri().parse().expect("mock URL"), Arc::new(FixedJwt));
    let error = reconcile(store.as_ref(), &client, &ReconcileOptions::default()).await.expect_err("the run fails");
    assert_eq!(error.to_string(), "GitHub answered 502 to GET /app/hook/deliveries");
    let log = read_whole_log(store.as_ref()).await;
    let recorded = ReconciliationCompleted::decode(&log[0]).expect("the failed run is recorded");
    assert_eq!(recorded.error.as_deref(), Some("GitHub answered 502 to GET /app/hook/deliveries"));
    assert_eq!((recorded.deliveries, recorded.redelivered), (0, 0));
    store.close().await;
}
