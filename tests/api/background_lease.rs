//! Several `all` instances on one database: the process manager, read models
//! and forwarders run on one at a time, and another takes over when it dies.

use std::time::Duration;

use hookwise::background::LEASE_POLL;

use crate::forward::{post_delivery, start_server, FORWARD_SECRET};
use crate::helpers::{backend_tests, eventually, Backend, TestApp, TestDatabase};
use crate::test_sink::TestSink;

backend_tests!(the_background_runs_on_one_instance_and_moves_when_it_dies);

/// A sample of `/metrics` at `base`: the value of the series `series` (name and labels as printed).
async fn metric(http: &reqwest::Client, base: &str, series: &str) -> Option<f64> {
    let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn sink_state(http: &reqwest::Client, base: &str) -> serde_json::Value {
    let response = http.get(format!("{base}/api/v1/sinks")).send().await.expect("sinks answers");
    let body: serde_json::Value = response.json().await.expect("JSON");
    body["sinks"][0]["state"].clone()
}

async fn the_background_runs_on_one_instance_and_moves_when_it_dies(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let sink = TestSink::start(FORWARD_SECRET).await;
    let http = reqwest::Client::new();
    const HELD: &str = "hookwise_background_lease_held";
    const SENT: &str = "hookwise_forward_batches_total{sink=\"main\"}";

    // The first instance is the real binary, so that it can die by SIGKILL.
    let (mut first, first_base) = start_server(&db.url, &sink.url());
    eventually(Duration::from_secs(10), "the first instance takes the lease", || async {
        metric(&http, &first_base, HELD).await == Some(1.0)
    })
    .await;
    let forward = format!("main={}", sink.url());
    let second = TestApp::spawn_on(db.share(), &["--forward", &forward, "--forward-secret", FORWARD_SECRET]).await;
    let second_base = second.url("");

    // The second stands by through several of its tries while the first holds the lease.
    tokio::time::sleep(LEASE_POLL * 3).await;
    assert_eq!(metric(&http, &second_base, HELD).await, Some(0.0));
    assert_eq!(sink_state(&http, &second_base).await, "standby");
    assert_eq!(sink_state(&http, &first_base).await, "healthy");

    // Deliveries to either instance are forwarded once, by the first alone.
    for n in 1..=10 {
        post_delivery(&http, if n % 2 == 0 { &first_base } else { &second_base }, n).await;
    }
    eventually(Duration::from_secs(15), "the first forwards all ten", || async { sink.taken_positions().len() == 10 })
        .await;
    assert_eq!(metric(&http, &second_base, SENT).await.unwrap_or(0.0), 0.0, "the standby sent nothing");
    // Killed only once its checkpoint holds all ten, so that a resend cannot blur what follows.
    eventually(Duration::from_secs(10), "the first's checkpoint reaches ten", || async {
        let response = http.get(format!("{first_base}/api/v1/sinks")).send().await.expect("sinks answers");
        let body: serde_json::Value = response.json().await.expect("JSON");
        body["sinks"][0]["position"] == 10
    })
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaping the first instance");

    // Its lease died with it: the second takes over and carries on from the checkpoint.
    eventually(Duration::from_secs(30), "the second takes the lease", || async {
        metric(&http, &second_base, HELD).await == Some(1.0)
    })
    .await;
    for n in 11..=15 {
        post_delivery(&http, &second_base, n).await;
    }
    eventually(Duration::from_secs(15), "the second forwards the rest", || async {
        sink.taken_positions().len() >= 15
    })
    .await;
    assert_eq!(sink.taken_positions(), (1..=15).collect::<Vec<u64>>(), "each event forwarded once, in order");
    assert_eq!(sink_state(&http, &second_base).await, "healthy");
    second.stop().await;
    drop(db);
}
