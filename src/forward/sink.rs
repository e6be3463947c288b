//! One sink's follower: read from the checkpoint, batch, POST, advance.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::watch;
use tokio::time::Instant;

use super::batch::{encode_event, sign_batch, Batch, PendingBatch};
use super::{ForwardSettings, SinkConfig};
use crate::metrics as names;
use crate::runner::{checkpoint_of, save_checkpoint};
use crate::sql::{SqlDb, SqlError};
use crate::store::{subscribe_all, EventStore, Position, StoreError};

/// Events taken from the subscription per read.
const READ_BATCH: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum SinkState {
    /// Not yet caught up from its checkpoint, or idle and well.
    Healthy,
    /// The last `failing_after` attempts or more failed; still retrying.
    Failing,
    /// Shut down.
    Stopped,
    /// Not run by this instance: another holds the background lease and runs
    /// the forwarders (or this one answers webhooks only); this one takes
    /// over if that one stops. Position and errors are as this instance last saw them.
    Standby,
}

/// What `GET /api/v1/sinks` shows of a sink.
#[derive(Debug, Clone, poem_openapi::Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SinkView {
    pub name: String,
    /// Scheme, host and port only (a URL may carry credentials).
    pub url: String,
    pub event_types: Option<Vec<String>>,
    pub state: SinkState,
    /// The last position the sink has acknowledged (its checkpoint).
    pub position: u64,
    /// Events in the log after `position`.
    pub lag: u64,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_error_at: Option<String>,
    pub last_success_at: Option<String>,
    pub consecutive_failures: u32,
}

#[derive(Debug)]
struct Progress {
    state: SinkState,
    position: Position,
    last_error: Option<String>,
    last_error_at: Option<time::OffsetDateTime>,
    last_success_at: Option<time::OffsetDateTime>,
    consecutive_failures: u32,
}

/// A sink's live status, shared between its follower, the API and `/metrics`.
#[derive(Debug)]
pub struct SinkStatus {
    pub config: SinkConfig,
    progress: Mutex<Progress>,
    failures: metrics::Counter,
    batches: metrics::Counter,
    events: metrics::Counter,
    failing: metrics::Gauge,
    lag: metrics::Gauge,
}

impl SinkStatus {
    pub fn new(config: SinkConfig) -> Self {
        let label = [("sink", config.name.clone())];
        SinkStatus {
            failures: metrics::counter!(names::FORWARD_FAILURES, &label),
            batches: metrics::counter!(names::FORWARD_BATCHES, &label),
            events: metrics::counter!(names::FORWARD_EVENTS, &label),
            failing: metrics::gauge!(names::FORWARD_FAILING, &label),
            lag: metrics::gauge!(names::FORWARD_LAG, &label),
            config,
            progress: Mutex::new(Progress {
                state: SinkState::Standby,
                position: Position::START,
                last_error: None,
                last_error_at: None,
                last_success_at: None,
                consecutive_failures: 0,
            }),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still usable.
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut progress);
    }

    pub fn position(&self) -> Position {
        self.progress.lock().unwrap_or_else(|e| e.into_inner()).position
    }

    /// The status against the log's `head`; also refreshes the lag gauge.
    pub fn view(&self, head: Position) -> SinkView {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let lag = head.0.saturating_sub(progress.position.0);
        self.lag.set(lag as f64);
        let url = &self.config.url;
        let rfc3339 = |t: Option<time::OffsetDateTime>| {
            t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        };
        SinkView {
            name: self.config.name.clone(),
            url: format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""))
                + &url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            event_types: self.config.event_types.clone(),
            state: progress.state,
            position: progress.position.0,
            lag,
            last_error: progress.last_error.clone(),
            last_error_at: rfc3339(progress.last_error_at),
            last_success_at: rfc3339(progress.last_success_at),
            consecutive_failures: progress.consecutive_failures,
        }
    }

    fn record_failure(&self, error: &str, failing_after: u32) {
        self.failures.increment(1);
        self.update(|p| {
            p.consecutive_failures = p.consecutive_failures.saturating_add(1);
            p.last_error = Some(error.to_owned());
            p.last_error_at = Some(time::OffsetDateTime::now_utc());
            if p.consecutive_failures >= failing_after && p.state != SinkState::Failing {
                p.state = SinkState::Failing;
                self.failing.set(1.0);
                tracing::warn!(sink = %self.config.name, error, "sink marked failing; keeping its place and retrying");
            }
        });
    }

    fn record_success(&self, batch: &Batch) {
        self.batches.increment(1);
        self.events.increment(batch.events as u64);
        self.update(|p| {
            if p.state == SinkState::Failing {
                tracing::info!(sink = %self.config.name, "sink recovered");
            }
            p.state = SinkState::Healthy;
            p.consecutive_failures = 0;
            p.position = p.position.max(batch.through);
            p.last_success_at = Some(time::OffsetDateTime::now_utc());
        });
        self.failing.set(0.0);
    }

    /// Marks the sink as run by another instance (which reports its failures).
    pub fn stand_by(&self) {
        self.update(|p| p.state = SinkState::Standby);
        self.failing.set(0.0);
    }

    fn set_position(&self, position: Position) {
        self.update(|p| p.position = position);
    }
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sql(#[from] SqlError),
}

enum Wake {
    Stop,
    BatchDue,
    Events(Vec<crate::store::RecordedEvent>),
}

/// Why a send gave up.
enum SendOutcome {
    Delivered,
    /// Shutdown came and the grace period ran out: the checkpoint stays.
    Abandoned,
}

/// Follows the log for one sink until `stop` turns true; then flushes what
/// it can within the grace period. Store or database failures restart it
/// from its checkpoint.
pub async fn run_sink(
    store: Arc<dyn EventStore>,
    db: SqlDb,
    http: reqwest::Client,
    settings: Arc<ForwardSettings>,
    status: Arc<SinkStatus>,
    mut stop: watch::Receiver<bool>,
) {
    // A new term on the background lease: no longer standing by.
    status.update(|p| {
        if p.state != SinkState::Failing {
            p.state = SinkState::Healthy;
        }
    });
    let follower = Follower { store, db, http, settings, status: status.clone() };
    let mut backoff = Duration::from_millis(200);
    loop {
        match follower.follow(&mut stop).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(sink = %status.config.name, error = %e, "forwarder failed; restarting from its checkpoint");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped(&mut stop) => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    status.update(|p| p.state = SinkState::Stopped);
}

struct Follower {
    store: Arc<dyn EventStore>,
    db: SqlDb,
    http: reqwest::Client,
    settings: Arc<ForwardSettings>,
    status: Arc<SinkStatus>,
}

impl Follower {
    fn sink(&self) -> &SinkConfig {
        &self.status.config
    }

    async fn follow(&self, stop: &mut watch::Receiver<bool>) -> Result<(), FollowError> {
        let checkpoint_name = self.sink().checkpoint_name();
        let checkpoint = checkpoint_of(&self.db, &checkpoint_name).await?;
        self.status.set_position(checkpoint);
        let mut subscription = subscribe_all(self.store.clone(), checkpoint);
        let mut pending = PendingBatch::default();
        // The last position read, whether or not the filter kept it.
        let mut seen = checkpoint;
        loop {
            if stop_requested(stop) {
                return self.flush_on_shutdown(pending, seen).await;
            }
            // Latency is bounded from the oldest pending event: a trickle of
            // new events never postpones the send.
            let deadline = pending.oldest().map(|t| Instant::from_std(t) + self.settings.max_batch_age);
            let wake = tokio::select! {
                biased;
                _ = stopped(stop) => Wake::Stop,
                _ = sleep_until_opt(deadline) => Wake::BatchDue,
                events = subscription.next_batch(READ_BATCH) => Wake::Events(events?),
            };
            match wake {
                Wake::Stop => continue,
                Wake::BatchDue => {
                    if let Some(batch) = pending.take(seen) {
                        if !self.send(batch, stop).await? {
                            return Ok(());
                        }
                    }
                }
                Wake::Events(events) => {
                    for event in events {
                        seen = event.position;
                        if !self.sink().accepts(&event.event_type) {
                            continue;
                        }
                        let encoded = encode_event(&event);
                        if pending.would_overflow(&encoded, self.settings.max_batch_bytes) {
                            // `seen` is this event: the batch accounts only for what precedes it.
                            let through = Position(event.position.0 - 1);
                            if let Some(batch) = pending.take(through) {
                                if !self.send(batch, stop).await? {
                                    return Ok(());
                                }
                            }
                        }
                        pending.push(event.position, &encoded);
                        if pending.bytes() >= self.settings.max_batch_bytes {
                            if let Some(batch) = pending.take(seen) {
                                if !self.send(batch, stop).await? {
                                    return Ok(());
                                }
                            }
                        }
                    }
                    // Only filtered-out events since the last batch: move past them.
                    if pending.is_empty() && seen > self.status.position() {
                        self.db.write(vec![save_checkpoint(&checkpoint_name, seen)]).await?;
                        self.status.set_position(seen);
                    }
                }
            }
        }
    }

    /// Sends what is pending and what the log already holds, within the grace
    /// period. Whatever is left stays after the checkpoint for the next start.
    async fn flush_on_shutdown(&self, mut pending: PendingBatch, mut seen: Position) -> Result<(), FollowError> {
        let flush = async {
            loop {
                let events = self.store.read_all(seen, READ_BATCH).await?;
                if events.is_empty() {
                    break;
                }
                for event in events {
                    seen = event.position;
                    if !self.sink().accepts(&event.event_type) {
                        continue;
                    }
                    let encoded = encode_event(&event);
                    if pending.would_overflow(&encoded, self.settings.max_batch_bytes) {
                        if let Some(batch) = pending.take(Position(event.position.0 - 1)) {
                            self.deliver(batch).await?;
                        }
                    }
                    pending.push(event.position, &encoded);
                }
            }
            if let Some(batch) = pending.take(seen) {
                self.deliver(batch).await?;
            } else if seen > self.status.position() {
                self.db.write(vec![save_checkpoint(&self.sink().checkpoint_name(), seen)]).await?;
                self.status.set_position(seen);
            }
            Ok::<(), FollowError>(())
        };
        match tokio::time::timeout(self.settings.shutdown_grace, flush).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    sink = %self.sink().name,
                    checkpoint = self.status.position().0,
                    "shutdown grace ran out; unsent events stay after the checkpoint"
                );
                Ok(())
            }
        }
    }

    /// Sends `batch` until the sink takes it. Returns false when shutdown
    /// came and the grace period ran out first.
    async fn send(&self, batch: Batch, stop: &mut watch::Receiver<bool>) -> Result<bool, FollowError> {
        let delivery = self.deliver(batch);
        tokio::pin!(delivery);
        let outcome = tokio::select! {
            result = &mut delivery => { result?; SendOutcome::Delivered }
            _ = stopped(stop) => {
                match tokio::time::timeout(self.settings.shutdown_grace, &mut delivery).await {
                    Ok(result) => { result?; SendOutcome::Delivered }
                    Err(_) => SendOutcome::Abandoned,
                }
            }
        };
        Ok(matches!(outcome, SendOutcome::Delivered))
    }

    /// POSTs `batch` with retries (no limit) and saves the checkpoint after the 2xx.
    async fn deliver(&self, batch: Batch) -> Result<(), FollowError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.min_backoff)
            .with_max_delay(self.settings.max_backoff)
            .with_jitter()
            .without_max_times();
        (|| self.post(&batch))
            .retry(backoff)
            .notify(|error: &String, retry_in: Duration| {
                tracing::debug!(sink = %self.sink().name, error, retry_in_ms = retry_in.as_millis() as u64, "batch not taken; retrying");
            })
            .await
            .ok();
        self.db.write(vec![save_checkpoint(&self.sink().checkpoint_name(), batch.through)]).await?;
        self.status.record_success(&batch);
        tracing::debug!(
            sink = %self.sink().name,
            batch = %batch.id,
            events = batch.events,
            bytes = batch.body.len(),
            through = batch.through.0,
            "batch delivered"
        );
        Ok(())
    }

    /// One attempt. The error is a short text for the API (no URL: it may carry credentials).
    async fn post(&self, batch: &Batch) -> Result<(), String> {
        let mut request = self
            .http
            .post(self.sink().url.clone())
            .timeout(self.settings.request_timeout)
            .header("content-type", "application/json")
            .header("x-hookwise-batch", batch.id.to_string())
            .body(batch.body.clone());
        if let Some(secret) = &self.settings.secret {
            request = request.header("x-hookwise-signature-256", sign_batch(secret, &batch.body));
        }
        let error = match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => format!("the sink answered HTTP {}", response.status().as_u16()),
            Err(e) if e.is_timeout() => format!("no answer within {} ms", self.settings.request_timeout.as_millis()),
            Err(e) if e.is_connect() => "could not connect to the sink".to_owned(),
            Err(e) => format!("sending failed: {}", e.without_url()),
        };
        self.status.record_failure(&error, self.settings.failing_after);
        Err(error)
    }
}

/// Resolves once shutdown was requested, or the application that could
/// request it is gone (the guard `wait_for` returns is not `Send`, hence this).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn stop_requested(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
