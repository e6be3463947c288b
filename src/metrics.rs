//! Prometheus metrics: every metric name hookwise records, in one place, and
//! the process-wide recorder that `GET /metrics` renders.
//!
//! Recording goes through the `metrics` facade (`metrics::counter!(NAME, …)`);
//! the recorder is installed once per process by [`handle`]. Labels are
//! `&'static str` wherever the value set is known, so the hot path does not
//! allocate for them, and every label value comes from a bounded set (never
//! from unverified input) so the number of series stays small.
//!
//! To add a metric: add its name here with a line saying what it counts and
//! its labels, and record it with the `metrics` macros where it happens.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// ---- intake ----------------------------------------------------------------

/// Counter. Deliveries answered by intake. Labels: `event` (a known GitHub
/// event name, else `other`), `outcome` (`accepted`, `duplicate`, `rejected`), `reason` (the error code
/// for `rejected`, else `-`).
pub const DELIVERIES: &str = "hookwise_deliveries_total";
/// Histogram, seconds. Time from request start to answer at intake (verification and durable append included).
pub const INTAKE_DURATION: &str = "hookwise_intake_duration_seconds";

// ---- event store -----------------------------------------------------------

/// Histogram, seconds. Time to commit one group of appends (one transaction). Label: `backend`.
pub const APPEND_DURATION: &str = "hookwise_append_commit_duration_seconds";
/// Histogram. Appends committed together in one group-commit transaction. Label: `backend`.
pub const APPEND_GROUP_SIZE: &str = "hookwise_append_group_size";
/// Gauge. The log's head position (sampled at scrape time).
pub const LOG_HEAD: &str = "hookwise_log_head_position";

// ---- background lease ------------------------------------------------------

/// Gauge. 1 while this instance holds the background lease (runs the process
/// manager, read models, forwarders and reconciliation), else 0 (sampled at scrape time).
pub const BACKGROUND_LEASE_HELD: &str = "hookwise_background_lease_held";

// ---- projections -----------------------------------------------------------

/// Gauge. Events between the log's head and a handler's checkpoint (sampled at scrape time). Label: `handler`.
pub const PROJECTION_LAG: &str = "hookwise_projection_lag_events";

// ---- forwarding ------------------------------------------------------------

/// Gauge. Events between the log's head and a sink's checkpoint (sampled at scrape time). Label: `sink`.
pub const FORWARD_LAG: &str = "hookwise_forward_lag_events";
/// Gauge. 1 while a sink is marked failing, else 0. Label: `sink`.
pub const FORWARD_FAILING: &str = "hookwise_forward_failing";
/// Counter. Failed POST attempts to a sink (each retry counts). Label: `sink`.
pub const FORWARD_FAILURES: &str = "hookwise_forward_failures_total";
/// Counter. Batches a sink acknowledged with a 2xx. Label: `sink`.
pub const FORWARD_BATCHES: &str = "hookwise_forward_batches_total";
/// Counter. Events a sink acknowledged (inside acknowledged batches). Label: `sink`.
pub const FORWARD_EVENTS: &str = "hookwise_forward_events_total";

// ---- process manager and executor --------------------------------------------

/// Gauge. Outbox commands waiting to run (sampled at scrape time).
pub const OUTBOX_DEPTH: &str = "hookwise_outbox_pending";
/// Gauge, seconds. Age of the oldest waiting outbox command (sampled at scrape time).
pub const OUTBOX_AGE: &str = "hookwise_outbox_oldest_age_seconds";
/// Counter. Executor attempts. Labels: `step`, `outcome` (`done`, `retry`, `abandoned`).
pub const EXECUTOR_ATTEMPTS: &str = "hookwise_executor_attempts_total";
/// Counter. GitHub REST calls answered. Label: `status` (HTTP status, or `error` without an answer).
pub const GITHUB_CALLS: &str = "hookwise_github_api_calls_total";
/// Gauge. `x-ratelimit-remaining` of GitHub's latest answer that carried it.
pub const GITHUB_RATE_REMAINING: &str = "hookwise_github_rate_limit_remaining";
/// Counter. Events the OpenHands agent server posted to `/agent-server/events/…`.
/// Label: `outcome` (`accepted`, `duplicate`, `ignored`: a conversation hookwise did not start).
pub const AGENT_SERVER_EVENTS: &str = "hookwise_agent_server_events_total";

// ---- reconciliation --------------------------------------------------------

/// Counter. Reconciliation runs. Label: `outcome` (`completed`, `failed`).
pub const RECONCILE_RUNS: &str = "hookwise_reconcile_runs_total";
/// Counter. Deliveries GitHub listed that were found missing from the log (never delivered successfully).
pub const RECONCILE_MISSING: &str = "hookwise_reconcile_missing_total";
/// Counter. Redelivery requests. Label: `outcome` (`requested`, `failed`).
pub const RECONCILE_REDELIVERIES: &str = "hookwise_reconcile_redeliveries_total";

/// Seconds: from 0.5 ms (an in-memory answer) to 10 s (GitHub's deadline).
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Appends per group commit, up to `store::MAX_GROUP`.
const GROUP_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// `[accepted, duplicate]` counters per known event (and `other`, last),
/// registered once so that counting a delivery is one atomic add.
static DELIVERY_COUNTERS: OnceLock<Vec<[metrics::Counter; 2]>> = OnceLock::new();
static INTAKE_HISTOGRAM: OnceLock<metrics::Histogram> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. When another
/// recorder was installed first (an embedding program's), hookwise's metrics
/// go there and `/metrics` renders an empty registry.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(APPEND_GROUP_SIZE.to_owned()), GROUP_SIZE_BUCKETS));
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            // Only an empty bucket list fails, and ours are constants.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        let counters = EVENTS
            .iter()
            .copied()
            .chain(["other"])
            .map(|event| {
                [
                    metrics::counter!(DELIVERIES, "event" => event, "outcome" => "accepted", "reason" => "-"),
                    metrics::counter!(DELIVERIES, "event" => event, "outcome" => "duplicate", "reason" => "-"),
                ]
            })
            .collect();
        let _ = DELIVERY_COUNTERS.set(counters);
        let _ = INTAKE_HISTOGRAM.set(metrics::histogram!(INTAKE_DURATION));
        handle
    })
}

/// Records one intake request's duration.
pub fn record_intake_duration(seconds: f64) {
    match INTAKE_HISTOGRAM.get() {
        Some(histogram) => histogram.record(seconds),
        None => metrics::histogram!(INTAKE_DURATION).record(seconds),
    }
}

/// Counts a stored delivery (`duplicate`: it was already in the log).
pub fn count_delivery_stored(event: &str, duplicate: bool) {
    let index = EVENTS.binary_search(&event).unwrap_or(EVENTS.len());
    match DELIVERY_COUNTERS.get().and_then(|counters| counters.get(index)) {
        Some(pair) => pair[usize::from(duplicate)].increment(1),
        // No recorder installed through `handle` (a library user): go through the facade.
        None => {
            let outcome = if duplicate { "duplicate" } else { "accepted" };
            metrics::counter!(DELIVERIES, "event" => known_event(event), "outcome" => outcome, "reason" => "-")
                .increment(1)
        }
    }
}

/// Counts the events of one agent-server webhook by outcome.
pub fn count_agent_server_events(accepted: usize, duplicates: usize, ignored: usize) {
    for (outcome, n) in [("accepted", accepted), ("duplicate", duplicates), ("ignored", ignored)] {
        if n > 0 {
            metrics::counter!(AGENT_SERVER_EVENTS, "outcome" => outcome).increment(n as u64);
        }
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(DELIVERIES, "Deliveries answered by intake, by event and outcome");
    describe_histogram!(INTAKE_DURATION, Unit::Seconds, "Intake request duration");
    describe_histogram!(APPEND_DURATION, Unit::Seconds, "Duration of one group-commit transaction");
    describe_histogram!(APPEND_GROUP_SIZE, "Appends committed per group-commit transaction");
    describe_gauge!(LOG_HEAD, "Position of the last event in the log");
    describe_gauge!(PROJECTION_LAG, "Events not yet applied by each event handler");
    describe_gauge!(FORWARD_LAG, "Events not yet acknowledged by each sink");
    describe_gauge!(FORWARD_FAILING, "1 while a sink is failing");
    describe_counter!(FORWARD_FAILURES, "Failed batch POSTs per sink");
    describe_counter!(FORWARD_BATCHES, "Batches acknowledged per sink");
    describe_counter!(FORWARD_EVENTS, "Events acknowledged per sink");
    describe_gauge!(OUTBOX_DEPTH, "Outbox commands waiting to run");
    describe_gauge!(OUTBOX_AGE, Unit::Seconds, "Age of the oldest waiting outbox command");
    describe_counter!(EXECUTOR_ATTEMPTS, "Executor attempts by step and outcome");
    describe_counter!(GITHUB_CALLS, "GitHub REST calls by HTTP status");
    describe_gauge!(GITHUB_RATE_REMAINING, "GitHub rate limit remaining, from the latest answer");
    describe_counter!(AGENT_SERVER_EVENTS, "Agent-server webhook events by outcome");
    describe_counter!(RECONCILE_RUNS, "Reconciliation runs by outcome");
    describe_counter!(RECONCILE_MISSING, "Deliveries found missing by reconciliation");
    describe_counter!(RECONCILE_REDELIVERIES, "Redelivery requests by outcome");
}

/// GitHub's event names as `&'static str` (so counting one allocates no
/// label), anything else as `other` (so a stranger's header cannot create
/// new series).
pub fn known_event(event: &str) -> &'static str {
    match EVENTS.binary_search(&event) {
        Ok(index) => EVENTS[index],
        Err(_) => "other",
    }
}

/// GitHub's webhook event names, sorted (binary search).
const EVENTS: &[&str] = &[
    "branch_protection_rule",
    "check_run",
    "check_suite",
    "code_scanning_alert",
    "commit_comment",
    "create",
    "delete",
    "dependabot_alert",
    "deploy_key",
    "deployment",
    "deployment_review",
    "deployment_status",
    "discussion",
    "discussion_comment",
    "fork",
    "github_app_authorization",
    "gollum",
    "installation",
    "installation_repositories",
    "installation_target",
    "issue_comment",
    "issues",
    "label",
    "marketplace_purchase",
    "member",
    "membership",
    "merge_group",
    "meta",
    "milestone",
    "org_block",
    "organization",
    "package",
    "page_build",
    "ping",
    "project",
    "project_card",
    "project_column",
    "projects_v2",
    "projects_v2_item",
    "public",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "push",
    "registry_package",
    "release",
    "repository",
    "repository_dispatch",
    "repository_import",
    "repository_ruleset",
    "repository_vulnerability_alert",
    "secret_scanning_alert",
    "security_advisory",
    "sponsorship",
    "star",
    "status",
    "sub_issues",
    "team",
    "team_add",
    "watch",
    "workflow_dispatch",
    "workflow_job",
    "workflow_run",
];

/// Renders every metric in the Prometheus text format.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_events_are_interned_and_strangers_are_other() {
        assert_eq!(known_event("issue_comment"), "issue_comment");
        assert_eq!(known_event("workflow_run"), "workflow_run");
        assert_eq!(known_event("made_up_event"), "other");
        assert_eq!(known_event(""), "other");
        assert!(EVENTS.windows(2).all(|w| w[0] < w[1]), "EVENTS is sorted for binary search");
    }
}
