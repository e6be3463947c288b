//! The KurrentDB backend beyond the conformance suite: its real (sparse)
//! positions, and how `serve` reacts to `EVENTSTORE_URL`. The server tests
//! skip unless the `kurrentdb` feature is built and `EVENTSTORE_URL` is set.

use std::process::Command;

#[cfg(feature = "kurrentdb")]
mod server {
    use std::sync::Arc;
    use std::time::Duration;

    use hookwise::events::{DomainEvent, WebhookReceived};
    use hookwise::store::{subscribe_all, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent};
    use uuid::Uuid;

    use crate::helpers::kurrent::open_scoped;
    use crate::helpers::{run_kurrent_test, Backend, TestApp, TestDatabase};

    async fn open() -> Option<(TestDatabase, Arc<dyn EventStore>)> {
        let db = TestDatabase::create(Backend::KurrentDb).await?;
        let store = open_scoped(&db.url, db.kurrent_scope().expect("a KurrentDB test database has a scope")).await;
        Some((db, store))
    }

    fn events(count: usize) -> Vec<NewEvent> {
        (0..count)
            .map(|i| NewEvent {
                event_id: Uuid::new_v4(),
                event_type: format!("Test{i}"),
                schema_version: 1,
                data: br#"{"n":1}"#.to_vec(),
                payload: None,
            })
            .collect()
    }

    fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
        events.iter().map(|e| e.event_id).collect()
    }

    /// Appends to three streams, single and multi-event: (stream, ids, first position reported).
    async fn fill(store: &Arc<dyn EventStore>) -> Vec<(String, Vec<Uuid>, Position)> {
        let plan: [(&str, ExpectedVersion, usize); 4] = [
            ("a", ExpectedVersion::NoStream, 3),
            ("b", ExpectedVersion::NoStream, 1),
            ("a", ExpectedVersion::Exact(2), 2),
            ("c", ExpectedVersion::Any, 4),
        ];
        let mut appended = Vec::new();
        for (stream, expected, count) in plan {
            let batch = events(count);
            let result = store.append(stream, expected, batch.clone()).await.expect("append");
            assert!(!result.already_stored);
            let first = result.first_position.expect("a written append has a position");
            appended.push((stream.to_owned(), batch.iter().map(|e| e.event_id).collect(), first));
        }
        appended
    }

    /// The whole service on KurrentDB (read models in SQLite): a delivery is
    /// stored once, byte for byte, and a redelivery is answered as a duplicate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_service_keeps_deliveries_in_kurrentdb() {
        run_kurrent_test(async {
            let Some(server) = TestDatabase::create(Backend::KurrentDb).await else {
                return;
            };
            let Some(sql) = TestDatabase::create(Backend::Sqlite).await else {
                return;
            };
            let app = TestApp::spawn_on(sql, &["--eventstore-url", &server.url]).await;
            let delivery = Uuid::new_v4().to_string();
            let body = br#"{"zen":"Keep it logically awesome.","hook_id":42}"#;
            for expected in ["accepted", "duplicate"] {
                let response = app.deliver("ping", &delivery, body).await;
                assert_eq!(response.status(), 200);
                let answer: serde_json::Value = response.json().await.expect("a JSON answer");
                assert_eq!(answer["status"], expected, "{answer}");
            }
            let stream = hookwise::events::streams::delivery(&delivery);
            let stored = app.store.read_stream(&stream, 0, 10).await.expect("read the delivery stream");
            assert_eq!(stored.len(), 1, "stored once");
            assert_eq!(stored[0].payload.as_deref(), Some(body.as_slice()), "payload kept byte for byte");
            let received = WebhookReceived::decode(&stored[0]).expect("a WebhookReceived");
            assert_eq!(received.event, "ping");
            app.stop().await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_positions_order_the_log_and_resume_exactly_after_each_event() {
        run_kurrent_test(async {
            let Some((_db, store)) = open().await else {
                return;
            };
            let appended = fill(&store).await;
            let all = store.read_all(Position::START, 100).await.expect("read_all");
            let expected_ids: Vec<Uuid> = appended.iter().flat_map(|(_, ids, _)| ids.clone()).collect();
            assert_eq!(ids(&all), expected_ids);
            assert!(all.windows(2).all(|w| w[0].position < w[1].position), "positions increase");
            assert!(all[0].position > Position::START);
            for (i, event) in all.iter().enumerate() {
                let rest = store.read_all(event.position, 100).await.expect("read_all after");
                assert_eq!(ids(&rest), ids(&all[i + 1..]), "after the event at index {i}");
                let one = store.read_all(event.position, 1).await.expect("read_all after, limit 1");
                assert_eq!(ids(&one), ids(&all[i + 1..]).into_iter().take(1).collect::<Vec<_>>());
            }
            assert_eq!(store.head().await.expect("head"), all[all.len() - 1].position);
            for (stream, stream_ids, first) in &appended {
                let at = all.iter().find(|e| e.event_id == stream_ids[0]).expect("appended event in $all");
                assert_eq!(*first, at.position, "first position reported for {stream}");
            }
            let a = store.read_stream("a", 0, 100).await.expect("read_stream");
            let in_all: Vec<&RecordedEvent> = all.iter().filter(|e| e.stream == "a").collect();
            assert_eq!(a.iter().collect::<Vec<_>>(), in_all, "a stream read matches $all, positions included");

            // The live subscription feeding the hint reaches the head.
            let mut hint = store.head_hint();
            let head = all[all.len() - 1].position;
            tokio::time::timeout(Duration::from_secs(10), hint.wait_for(|p| *p >= head))
                .await
                .expect("the hint reaches the head")
                .expect("hint sender alive");
            store.close().await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscription_resumes_from_a_real_checkpoint_then_follows() {
        run_kurrent_test(async {
            let Some((_db, store)) = open().await else {
                return;
            };
            fill(&store).await;
            let all = store.read_all(Position::START, 100).await.expect("read_all");
            // Resume inside the multi-event append to "c" (its second event).
            let checkpoint = all[7].position;
            let mut subscription = subscribe_all(store.clone(), checkpoint);
            for expected in &all[8..] {
                let got = tokio::time::timeout(Duration::from_secs(10), subscription.next())
                    .await
                    .expect("caught-up event in time")
                    .expect("subscription read");
                assert_eq!(got, *expected);
            }
            let late = events(2);
            store.append("d", ExpectedVersion::NoStream, late.clone()).await.expect("live append");
            for sent in &late {
                let got = tokio::time::timeout(Duration::from_secs(10), subscription.next())
                    .await
                    .expect("live event in time")
                    .expect("subscription read");
                assert_eq!((got.event_id, got.stream.as_str()), (sent.event_id, "d"));
                assert!(got.position > checkpoint);
            }
            store.close().await;
        })
        .await;
    }
}

/// `serve` with `EVENTSTORE_URL` set either names the missing cargo feature or,
/// built with it, fails to reach the (absent) server — at start, not later.
#[test]
fn serve_with_an_eventstore_url_fails_at_start_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("serve")
        .env("DATABASE_URL", "sqlite://unused-never-opened.db")
        .env("GITHUB_APP_WEBHOOK_SECRET", "test-secret")
        .env("HOOKWISE_BIND", "127.0.0.1:0")
        // Nothing listens on port 1.
        .env("EVENTSTORE_URL", "esdb://127.0.0.1:1?tls=false")
        .output()
        .expect("running the hookwise binary");
    assert!(!output.status.success(), "serve must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if cfg!(feature = "kurrentdb") {
        assert!(stderr.contains("KurrentDB"), "stderr names the unreachable server: {stderr}");
    } else {
        assert!(stderr.contains("`kurrentdb` cargo feature"), "stderr names the feature: {stderr}");
    }
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"), "it never listened");
}
