//! A real hookwise server on port 0 against a test database, and a client
//! that signs deliveries the way GitHub does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use hookwise::config::{Config, ServeArgs};
use hookwise::events::DomainEvent;
use hookwise::github::signature::WebhookSecret;
use hookwise::store::{EventStore, Position, RecordedEvent};
use hookwise::Application;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Backend, TestDatabase};

pub const TEST_SECRET: &str = "test-webhook-secret";

#[derive(Parser)]
struct ServeCommand {
    #[command(flatten)]
    args: ServeArgs,
}

/// A running server. Stop it with [`TestApp::stop`] to let it flush.
pub struct TestApp {
    pub addr: SocketAddr,
    pub store: Arc<dyn EventStore>,
    pub db: TestDatabase,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// A server on a fresh database, or `None` when that backend is unavailable here.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        let db = TestDatabase::create(backend).await?;
        Some(Self::spawn_on(db, &[]).await)
    }

    /// A server on `db`, configured like `hookwise serve` with these extra flags.
    pub async fn spawn_on(db: TestDatabase, extra_args: &[&str]) -> TestApp {
        Self::spawn_with(db, extra_args, |_| {}).await
    }

    /// Like [`TestApp::spawn_on`], with the parsed configuration adjusted by `customize`
    /// (for settings that have no flag, such as the forwarder's limits).
    pub async fn spawn_with(db: TestDatabase, extra_args: &[&str], customize: impl FnOnce(&mut Config)) -> TestApp {
        let mut argv = vec![
            "hookwise".to_owned(),
            "--database-url".to_owned(),
            db.url.clone(),
            "--bind".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--webhook-secret".to_owned(),
            TEST_SECRET.to_owned(),
        ];
        if !extra_args.contains(&"--eventstore-url") {
            // The log lives in `db`, whatever EVENTSTORE_URL the shell has.
            argv.extend(["--eventstore-url".to_owned(), String::new()]);
        }
        argv.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let args = ServeCommand::try_parse_from(argv).expect("valid test flags").args;
        let mut config = Config::from_args(args).expect("valid test configuration");
        customize(&mut config);
        let app = Application::build(config).await.expect("the server starts");
        let addr = app.local_addr();
        let store = app.store();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        TestApp { addr, store, db, http: reqwest::Client::new(), shutdown: Some(shutdown), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Posts `body` as GitHub would, signed with the test secret.
    pub async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> reqwest::Response {
        self.deliver_signed(event, delivery, body, &sign(TEST_SECRET, body)).await
    }

    pub async fn deliver_signed(&self, event: &str, delivery: &str, body: &[u8], signature: &str) -> reqwest::Response {
        self.deliver_through_hook("42", event, delivery, body, signature).await
    }

    /// A delivery as another of the App's webhooks (`X-GitHub-Hook-ID`) sends it.
    pub async fn deliver_through_hook(
        &self,
        hook_id: &str,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.url("/integration/github/events"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-github-hook-id", hook_id)
            .header("x-hub-signature-256", signature)
            .body(body.to_vec())
            .send()
            .await
            .expect("the server answers")
    }

    /// Every event in the log.
    pub async fn log(&self) -> Vec<RecordedEvent> {
        read_whole_log(self.store.as_ref()).await
    }

    /// The first `E` in the log, waiting up to 20 s for one to be appended.
    pub async fn first_event<E: DomainEvent>(&self) -> E {
        let started = std::time::Instant::now();
        loop {
            if let Some(event) = self.log().await.iter().find(|e| e.event_type == E::TYPE) {
                return E::decode(event).unwrap_or_else(|e| panic!("decoding {}: {e}", E::TYPE));
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "no {} was appended", E::TYPE);
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Stops the server gracefully and hands back its database.
    pub async fn stop(mut self) -> TestDatabase {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
        let TestApp { db, .. } = self;
        db
    }
}

pub async fn read_whole_log(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_all(after, 1000).await.expect("reading the log");
        let Some(last) = page.last() else { return events };
        after = last.position;
        events.extend(page);
    }
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    WebhookSecret::parse(secret).expect("non-empty secret").sign(body)
}

/// The corpus of real GitHub payloads (see the fixtures' README), or `None`
/// with a note when it is absent outside CI. Under CI its absence fails.
pub fn payload_examples() -> Option<PathBuf> {
    let dir = std::env::var_os("GITHUB_PAYLOAD_EXAMPLES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github/payload-examples")
    });
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("the payload corpus is missing at {} (set GITHUB_PAYLOAD_EXAMPLES)", dir.display());
    }
    eprintln!("skipped: the payload corpus is not at {} (set GITHUB_PAYLOAD_EXAMPLES)", dir.display());
    None
}

/// `(event name, file)` for every payload in the corpus, sorted.
pub fn corpus_files(dir: &std::path::Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for event_dir in std::fs::read_dir(dir).expect("reading the corpus") {
        let event_dir = event_dir.expect("corpus entry").path();
        if !event_dir.is_dir() {
            continue;
        }
        let event = event_dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        for file in std::fs::read_dir(&event_dir).expect("reading an event folder") {
            let file = file.expect("corpus file").path();
            if file.extension().is_some_and(|e| e == "json") {
                files.push((event.clone(), file));
            }
        }
    }
    files.sort();
    files
}
