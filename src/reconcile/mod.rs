//! Missed-delivery reconciliation. GitHub does not redeliver on its own: this
//! lists the App's recent delivery attempts, and asks again for every
//! delivery (GUID) that never had a successful attempt and is not in the log.
//! Each run is recorded as `ReconciliationCompleted` on the `reconcile`
//! stream and counted in the metrics.

pub mod deliveries;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use deliveries::{DeliveriesClient, DeliveriesError, DeliveryAttempt};

use crate::events::{streams, DomainEvent, ReconciliationCompleted};
use crate::metrics as names;
use crate::store::{EventStore, ExpectedVersion, StoreError};

/// GitHub keeps (and redelivers) deliveries of the past 3 days; a margin
/// keeps a redelivery request from racing the window's edge.
pub const REDELIVERY_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600 - 600);

#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// How far back to look (capped at [`REDELIVERY_WINDOW`]).
    pub since: Duration,
    /// Least time between two redelivery requests (the bounded rate).
    pub redelivery_spacing: Duration,
    /// Redeliveries asked per run at most; the rest wait for the next run.
    pub max_redeliveries: u64,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            since: REDELIVERY_WINDOW,
            redelivery_spacing: Duration::from_millis(500),
            max_redeliveries: 500,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    GitHub(#[from] DeliveriesError),
    #[error("recording the run: {0}")]
    Store(#[from] StoreError),
}

/// One reconciliation run. The run is recorded even when it stops early
/// (with its `error`); the error is returned too.
pub async fn reconcile(
    store: &dyn EventStore,
    github: &DeliveriesClient,
    options: &ReconcileOptions,
) -> Result<ReconciliationCompleted, ReconcileError> {
    let started = time::OffsetDateTime::now_utc();
    let since = options.since.min(REDELIVERY_WINDOW);
    let mut report = ReconciliationCompleted {
        started_at: started.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        since_seconds: since.as_secs(),
        attempts_listed: 0,
        deliveries: 0,
        already_in_log: 0,
        missing: 0,
        redelivered: 0,
        failed: 0,
        error: None,
    };
    let outcome = run(store, github, options, started - since, &mut report).await;
    if let Err(e) = &outcome {
        report.error = Some(e.to_string());
    }
    let event = report.to_new_event(uuid::Uuid::new_v4(), None).map_err(StoreError::Encode)?;
    store.append(streams::RECONCILE, ExpectedVersion::Any, vec![event]).await?;
    metrics::counter!(names::RECONCILE_RUNS, "outcome" => if outcome.is_ok() { "completed" } else { "failed" })
        .increment(1);
    metrics::counter!(names::RECONCILE_MISSING).increment(report.missing);
    metrics::counter!(names::RECONCILE_REDELIVERIES, "outcome" => "requested").increment(report.redelivered);
    metrics::counter!(names::RECONCILE_REDELIVERIES, "outcome" => "failed").increment(report.failed);
    tracing::info!(
        attempts = report.attempts_listed,
        deliveries = report.deliveries,
        missing = report.missing,
        redelivered = report.redelivered,
        failed = report.failed,
        error = report.error.as_deref().unwrap_or("-"),
        "reconciliation run"
    );
    outcome?;
    Ok(report)
}

async fn run(
    store: &dyn EventStore,
    github: &DeliveriesClient,
    options: &ReconcileOptions,
    cutoff: time::OffsetDateTime,
    report: &mut ReconciliationCompleted,
) -> Result<(), ReconcileError> {
    // GUID -> its attempts inside the window, GUIDs in first-seen order.
    let mut by_guid: HashMap<String, Vec<DeliveryAttempt>> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = github.list_page(cursor.as_deref()).await?;
        let mut reached_cutoff = page.is_empty();
        for attempt in page {
            // Newest first: an attempt before the cutoff ends the listing.
            if attempt.delivered_at().is_none_or(|at| at < cutoff) {
                reached_cutoff = true;
                continue;
            }
            report.attempts_listed += 1;
            let attempts = by_guid.entry(attempt.guid.clone()).or_default();
            if attempts.is_empty() {
                order.push(attempt.guid.clone());
            }
            attempts.push(attempt);
        }
        match next {
            Some(next) if !reached_cutoff => cursor = Some(next),
            _ => break,
        }
    }
    report.deliveries = order.len() as u64;

    // Oldest first: those are closest to leaving the window.
    let mut last_request: Option<tokio::time::Instant> = None;
    for guid in order.iter().rev() {
        let attempts = &by_guid[guid];
        if attempts.iter().any(DeliveryAttempt::succeeded) {
            continue;
        }
        // The newest attempt is the one to redeliver (listed first).
        let latest = &attempts[0];
        if !store.read_stream(&streams::delivery(&guid.to_ascii_lowercase()), 0, 1).await?.is_empty() {
            report.already_in_log += 1;
            continue;
        }
        report.missing += 1;
        if report.redelivered + report.failed >= options.max_redeliveries {
            report.failed += 1;
            continue;
        }
        if let Some(previous) = last_request {
            tokio::time::sleep_until(previous + options.redelivery_spacing).await;
        }
        last_request = Some(tokio::time::Instant::now());
        match github.redeliver(latest.id).await {
            Ok(()) => report.redelivered += 1,
            Err(e @ DeliveriesError::RateLimited { .. }) => {
                // Everything left waits for the next run.
                report.failed += 1;
                return Err(e.into());
            }
            Err(e) => {
                tracing::warn!(guid = %guid, attempt = latest.id, error = %e, "redelivery request failed");
                report.failed += 1;
            }
        }
    }
    Ok(())
}

/// Reconciles every `interval` until `stop`. The first run looks back over
/// the whole window (covering any downtime); later runs over two intervals.
pub async fn run_periodically(
    store: Arc<dyn EventStore>,
    github: DeliveriesClient,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut options = ReconcileOptions::default();
    loop {
        tokio::select! {
            _ = reconcile(store.as_ref(), &github, &options) => {}
            _ = stop.changed() => return,
        }
        options.since = (interval * 2).min(REDELIVERY_WINDOW);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}
