//! The real binary under concurrent load, killed with SIGKILL and restarted on
//! the same data: every delivery that got a 200 is in the log exactly once.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookwise::events::{DomainEvent, WebhookReceived};

use crate::helpers::{backend_tests, read_whole_log, sign, Backend, TestDatabase, TEST_SECRET};

backend_tests!(acknowledged_deliveries_survive_sigkill);

/// Starts `hookwise serve` and returns it with the address it printed.
fn start_server(database_url: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env_remove("EVENTSTORE_URL")
        .env("GITHUB_APP_WEBHOOK_SECRET", TEST_SECRET)
        .env("HOOKWISE_BIND", "127.0.0.1:0")
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

async fn acknowledged_deliveries_survive_sigkill(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let (mut child, base) = start_server(&db.url);
    let url = format!("{base}/integration/github/events");
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let body = Arc::new(br#"{"action":"created","installation":{"id":9},"comment":{"body":"load"}}"#.to_vec());
    let signature = sign(TEST_SECRET, &body);

    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let mut senders = Vec::new();
    for worker in 0..16 {
        let (http, url, body, signature, acknowledged) =
            (http.clone(), url.clone(), body.clone(), signature.clone(), acknowledged.clone());
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let delivery = format!("crash-{worker}-{n}");
                let sent = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "issue_comment")
                    .header("x-github-delivery", &delivery)
                    .header("x-hub-signature-256", &signature)
                    .body(body.to_vec())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => acknowledged.lock().expect("lock").push(delivery),
                    Ok(response) => panic!("unexpected status {} before the kill", response.status()),
                    // The server is gone: this worker is done.
                    Err(_) => return,
                }
            }
        }));
    }
    // Let load build up, then kill without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the child");
    for sender in senders {
        sender.await.expect("sender task");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() > 50, "only {} deliveries were acknowledged before the kill", acknowledged.len());

    // Restart on the same data: it starts, and serves.
    let (mut child, base) = start_server(&db.url);
    let health = reqwest::get(format!("{base}/readyz")).await.expect("readyz answers");
    assert_eq!(health.status(), 200);
    child.kill().expect("stopping the restarted server");
    child.wait().expect("reaping the child");

    let store = db.open_store().await;
    let log = read_whole_log(store.as_ref()).await;
    let mut stored: HashMap<String, usize> = HashMap::new();
    for event in &log {
        let received = WebhookReceived::decode(event).expect("a WebhookReceived");
        *stored.entry(received.delivery_id).or_default() += 1;
    }
    for delivery in &acknowledged {
        assert_eq!(stored.get(delivery), Some(&1), "acknowledged delivery {delivery} is in the log exactly once");
    }
    assert!(stored.values().all(|&n| n == 1), "no delivery is stored twice");
    let distinct: HashSet<_> = acknowledged.iter().collect();
    assert_eq!(distinct.len(), acknowledged.len());
    let positions: Vec<u64> = log.iter().map(|e| e.position.0).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions strictly increase");
    store.close().await;
}
