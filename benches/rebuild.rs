//! Rebuild throughput: fills a log with realistic deliveries (the corpus's
//! 3–30 KB payloads, mixed events, with varied delivery ids, repositories and
//! PR numbers) and times a full rebuild of every read model.
//!
//! `scripts/bench-rebuild` runs it on SQLite and on a throwaway PostgreSQL.
//! Environment: `BENCH_DATABASE_URL` (required: `sqlite://…` or `postgres://…`),
//! `BENCH_DELIVERIES` (default 200000), `GITHUB_PAYLOAD_EXAMPLES` (the corpus).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hookwise::events::{derived_id, streams, DomainEvent, RepositoryRef, SecretSlot, SenderRef, WebhookReceived};
use hookwise::projections::read_models;
use hookwise::sql::SqlDb;
use hookwise::store::{self, EventStore, ExpectedVersion};
use serde_json::Value;

/// Appends in flight at once while filling (group commit batches them).
const CONCURRENCY: usize = 256;

struct Template {
    event: String,
    body: Value,
}

fn corpus() -> Vec<Template> {
    let dir = std::env::var_os("GITHUB_PAYLOAD_EXAMPLES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github/payload-examples")
    });
    let mut templates = Vec::new();
    for event_dir in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let event_dir = event_dir.expect("corpus entry").path();
        let event = event_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let Ok(files) = std::fs::read_dir(&event_dir) else { continue };
        for file in files.flatten() {
            let bytes = std::fs::read(file.path()).expect("corpus file");
            if (3 * 1024..=30 * 1024).contains(&bytes.len()) {
                if let Ok(body) = serde_json::from_slice(&bytes) {
                    templates.push(Template { event: event.clone(), body });
                }
            }
        }
    }
    templates.sort_by(|a, b| a.event.cmp(&b.event));
    assert!(!templates.is_empty(), "no 3–30 KB payloads in the corpus at {}", dir.display());
    templates
}

/// The `i`th delivery: a corpus payload with its repository, PR/issue number and sender varied.
fn delivery(templates: &[Template], i: usize) -> (String, hookwise::store::NewEvent) {
    let template = &templates[i % templates.len()];
    let mut body = template.body.clone();
    let repository_id = 1000 + (i % 50) as u64;
    let full_name = format!("bench-org/repo-{}", i % 50);
    if let Some(repository) = body.get_mut("repository").and_then(Value::as_object_mut) {
        repository.insert("id".into(), repository_id.into());
        repository.insert("full_name".into(), full_name.clone().into());
    }
    let number = (i / 7 % 5000) as u64;
    for key in ["pull_request", "issue"] {
        if let Some(object) = body.get_mut(key).and_then(Value::as_object_mut) {
            object.insert("number".into(), number.into());
        }
    }
    let login = format!("user-{}", i % 300);
    if let Some(sender) = body.get_mut("sender").and_then(Value::as_object_mut) {
        sender.insert("login".into(), login.clone().into());
    }
    let bytes = serde_json::to_vec(&body).expect("JSON");
    let delivery_id = format!("bench-{i:08}");
    let received = WebhookReceived {
        delivery_id: delivery_id.clone(),
        hook_id: "1".into(),
        event: template.event.clone(),
        action: body["action"].as_str().map(str::to_owned),
        installation_id: body["installation"]["id"].as_u64(),
        repository: body["repository"].is_object().then_some(RepositoryRef { id: repository_id, full_name }),
        sender: body["sender"]["id"].as_u64().map(|id| SenderRef { id, login, kind: "User".into() }),
        signature: "sha256=".to_owned() + &"0".repeat(64),
        secret: SecretSlot::Current,
    };
    let event =
        received.to_new_event(derived_id(&["delivery", "1", &delivery_id]), Some(bytes.into())).expect("encodes");
    (streams::delivery(&delivery_id), event)
}

async fn fill(store: Arc<dyn EventStore>, templates: Arc<Vec<Template>>, deliveries: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (store, templates, next) = (store.clone(), templates.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= deliveries {
                    return;
                }
                let (stream, event) = delivery(&templates, i);
                store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
            }
        }));
    }
    for worker in workers {
        worker.await.expect("filler");
    }
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs benchmarks too: without a database named, there is nothing to time.
    let Ok(url) = std::env::var("BENCH_DATABASE_URL") else {
        eprintln!("skipped: set BENCH_DATABASE_URL (sqlite://… or postgres://…), or run scripts/bench-rebuild");
        return;
    };
    let deliveries: usize = std::env::var("BENCH_DELIVERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let label = if url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" };
    let templates = Arc::new(corpus());
    let store = store::open(&url).await.expect("opening the store");
    let db = SqlDb::connect(&url).await.expect("opening the SQL database");
    hookwise::cli::admin::prepare_all(&db).await.expect("preparing the read models");

    let head = store.head().await.expect("head").0 as usize;
    if head < deliveries {
        let started = Instant::now();
        fill(store.clone(), templates.clone(), deliveries).await;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{label}: filled {deliveries} deliveries in {seconds:.1} s ({:.0} appends/s)",
            deliveries as f64 / seconds
        );
    }
    // How fast the log alone can be read, for comparison.
    let started = Instant::now();
    let mut after = hookwise::store::Position::START;
    let mut read = 0usize;
    loop {
        let page = store.read_all(after, 2000).await.expect("reading the log");
        let Some(last) = page.last() else { break };
        after = last.position;
        read += page.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{label}: read {read} events in {seconds:.1} s ({:.0} events/s)", read as f64 / seconds);

    let models = read_models();
    let started = Instant::now();
    let reports = hookwise::commands::admin::rebuild(store.as_ref(), &db, &models, "bench").await.expect("rebuild");
    let seconds = started.elapsed().as_secs_f64();
    let events = reports.first().map(|r| r.events).unwrap_or(0);
    let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
    println!(
        "{label}: rebuilt {} read models ({}) from {events} events in {seconds:.1} s: {:.0} events/s",
        models.len(),
        names.join(", "),
        events as f64 / seconds
    );
    store.close().await;
}
