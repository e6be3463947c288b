//! `GET /metrics`: the Prometheus text format. Gauges that are cheap to read
//! but costly to keep current (lags, head) are sampled here, at scrape time.

use std::sync::atomic::Ordering;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, Response};

use super::AppState;
use crate::metrics as names;

#[handler]
pub async fn render_metrics(state: Data<&AppState>) -> Response {
    sample_gauges(&state).await;
    Response::builder()
        .status(StatusCode::OK)
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(names::render())
}

/// Best effort: a store that cannot answer leaves the gauges at their last values.
async fn sample_gauges(state: &AppState) {
    metrics::gauge!(names::BACKGROUND_LEASE_HELD).set(if state.leading.load(Ordering::Relaxed) { 1.0 } else { 0.0 });
    let Ok(head) = state.store.head().await else {
        return;
    };
    metrics::gauge!(names::LOG_HEAD).set(head.0 as f64);
    for sink in state.sinks.iter() {
        sink.view(head);
    }
    let outbox = state.db.query("SELECT COUNT(*), MIN(due_at) FROM outbox WHERE status = 'pending'", Vec::new()).await;
    if let Some(row) = outbox.ok().as_ref().and_then(|rows| rows.first()) {
        let pending = row.get::<u64>(0).unwrap_or(0);
        metrics::gauge!(names::OUTBOX_DEPTH).set(pending as f64);
        let oldest = row.get::<Option<i64>>(1).ok().flatten();
        let age = oldest.map_or(0.0, |due| (crate::store::now_micros() - due).max(0) as f64 / 1e6);
        metrics::gauge!(names::OUTBOX_AGE).set(age);
    }
    let Ok(rows) = state.db.query("SELECT name, position FROM checkpoints", Vec::new()).await else {
        return;
    };
    for row in rows {
        let (Ok(name), Ok(position)) = (row.get::<String>(0), row.get::<u64>(1)) else {
            continue;
        };
        // Sinks have their own lag gauge.
        if name.starts_with("forward:") {
            continue;
        }
        metrics::gauge!(names::PROJECTION_LAG, "handler" => name).set(head.0.saturating_sub(position) as f64);
    }
}
