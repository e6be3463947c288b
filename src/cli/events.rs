//! `hookwise events`: print the log as JSON lines.

use std::io::Write;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::store::{subscribe_all, EventStore, Position, RecordedEvent, StoreError};

/// One event as a JSON line: position, stream, type, recorded time, data,
/// and the payload as JSON where it is JSON (base64-free: raw bytes that are
/// not JSON are shown as a string of their length).
pub fn event_json(event: &RecordedEvent) -> Value {
    let data: Value = serde_json::from_slice(&event.data).unwrap_or(Value::Null);
    let recorded_at = event.recorded_at().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut line = json!({
        "position": event.position.0,
        "stream": event.stream,
        "version": event.version,
        "type": event.event_type,
        "schema_version": event.schema_version,
        "recorded_at": recorded_at,
        "data": data,
    });
    if let Some(payload) = &event.payload {
        line["payload"] = serde_json::from_slice(payload).unwrap_or_else(|_| json!({"unparsed_bytes": payload.len()}));
    }
    line
}

/// Prints events after `after`; with `follow`, keeps printing new ones.
pub async fn print_events(store: Arc<dyn EventStore>, after: Position, follow: bool) -> Result<(), StoreError> {
    let stdout = std::io::stdout();
    let write = |event: &RecordedEvent| {
        let mut out = stdout.lock();
        // A closed pipe (`| head`) ends the listing quietly.
        writeln!(out, "{}", event_json(event)).and_then(|_| out.flush()).is_ok()
    };
    if follow {
        let mut subscription = subscribe_all(store, after);
        loop {
            let event = subscription.next().await?;
            if !write(&event) {
                return Ok(());
            }
        }
    }
    let mut after = after;
    loop {
        let page = store.read_all(after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.position;
        for event in &page {
            if !write(event) {
                return Ok(());
            }
        }
    }
}
