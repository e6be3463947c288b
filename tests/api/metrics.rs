//! `/metrics` after a scripted flow: the counters moved by exactly what the flow did.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hookwise::sql::SqlDb;

use crate::helpers::{backend_tests, sign, Backend, TestApp, TestDatabase};
use crate::test_sink::TestSink;

backend_tests!(metrics_count_what_happened);

/// One sample: metric name and labels (sorted) to value.
pub type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

pub fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest.trim_end_matches('}');
                let labels = labels
                    .split("\",")
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once("=\"").expect("label");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.insert((name, labels), value.parse().expect("a number"));
    }
    samples
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.get(&(name.to_owned(), labels)).copied().unwrap_or(0.0)
}

async fn scrape(app: &TestApp) -> Samples {
    let response = app.http.get(app.url("/metrics")).send().await.expect("/metrics answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse(&response.text().await.expect("body"))
}

async fn metrics_count_what_happened(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    // The recorder is process-wide and tests run in parallel: this test uses
    // an event type, sink and handler name that no other test (nor the other backend) uses.
    let event = match backend {
        Backend::Sqlite => "repository_ruleset",
        Backend::Postgres => "sub_issues",
        Backend::KurrentDb => "security_advisory",
    };
    let sink_name = format!("metrics-{backend}");
    let handler = format!("metrics-test-{backend}");
    let sink = TestSink::start("s").await;
    let forward = format!("{sink_name}={}", sink.url());
    let app = TestApp::spawn_with(db, &["--forward", &forward, "--forward-secret", "s"], |config| {
        config.forward.max_batch_age = Duration::from_millis(100);
    })
    .await;
    let deliveries =
        |outcome: &'static str, reason: &'static str| [("event", event), ("outcome", outcome), ("reason", reason)];
    let before = scrape(&app).await;

    let body = br#"{"action":"created","installation":{"id":9}}"#;
    for n in 0..3 {
        assert_eq!(app.deliver(event, &format!("m-{backend}-{n}"), body).await.status(), 200);
    }
    assert_eq!(app.deliver(event, &format!("m-{backend}-0"), body).await.status(), 200, "a duplicate");
    for n in 0..2 {
        let response = app.deliver_signed(event, &format!("bad-{backend}-{n}"), body, &sign("wrong", body)).await;
        assert_eq!(response.status(), 403);
    }
    let not_json = b"{not json";
    assert_eq!(app.deliver(event, &format!("nj-{backend}"), not_json).await.status(), 400);

    // A handler's checkpoint one event behind the head.
    let sql = SqlDb::connect(&app.db.url).await.expect("sql");
    let head = app.store.head().await.expect("head").0;
    sql.write(vec![hookwise::runner::save_checkpoint(&handler, hookwise::store::Position(head - 1))])
        .await
        .expect("checkpoint");

    // The sink takes all three events.
    let started = Instant::now();
    while sink.taken_positions().len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "the sink got the events");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The sink has the events a moment before hookwise has its 2xx and moves
    // the checkpoint: scrape until the lag says so.
    let sink_label = [("sink", sink_name.as_str())];
    let mut after = scrape(&app).await;
    while sample(&after, "hookwise_forward_lag_events", &sink_label) != 0.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the sink's checkpoint caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(&app).await;
    }

    let delta = |name: &str, labels: &[(&str, &str)]| sample(&after, name, labels) - sample(&before, name, labels);
    let total = "hookwise_deliveries_total";
    assert_eq!(delta(total, &deliveries("accepted", "-")), 3.0);
    assert_eq!(delta(total, &deliveries("duplicate", "-")), 1.0);
    assert_eq!(delta(total, &deliveries("rejected", "invalid_signature")), 2.0);
    assert_eq!(delta(total, &deliveries("rejected", "invalid_json")), 1.0);
    // Shared with concurrent tests: at least this flow's share.
    assert!(delta("hookwise_intake_duration_seconds_count", &[]) >= 7.0);
    let backend_label = [("backend", if backend == Backend::Sqlite { "sqlite" } else { "postgres" })];
    assert!(delta("hookwise_append_group_size_sum", &backend_label) >= 3.0);
    assert!(delta("hookwise_append_commit_duration_seconds_count", &backend_label) >= 1.0);
    assert!(sample(&after, "hookwise_log_head_position", &[]) >= 1.0, "the head is sampled");
    assert_eq!(sample(&after, "hookwise_projection_lag_events", &[("handler", &handler)]), 1.0);

    assert_eq!(sample(&after, "hookwise_forward_events_total", &sink_label), 3.0);
    assert!(sample(&after, "hookwise_forward_batches_total", &sink_label) >= 1.0);
    assert_eq!(sample(&after, "hookwise_forward_lag_events", &sink_label), 0.0);
    assert_eq!(sample(&after, "hookwise_forward_failing", &sink_label), 0.0);
    assert_eq!(sample(&after, "hookwise_forward_failures_total", &sink_label), 0.0);
    app.stop().await;
}
