use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{EventStore, Position, RecordedEvent, StoreError};

/// Events read per round trip while catching up.
const PAGE: usize = 100;
/// How long a live subscription sleeps without a wake-up before it polls
/// anyway (another instance may have appended, or a hint was lost).
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Catch-up then live reader of the whole log, in position order.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    after: Position,
    buffered: VecDeque<RecordedEvent>,
    hint: watch::Receiver<Position>,
    payloads: bool,
}

impl Subscription {
    pub(super) fn new(store: Arc<dyn EventStore>, after: Position, payloads: bool) -> Self {
        let hint = store.head_hint();
        Subscription { store, after, buffered: VecDeque::new(), hint, payloads }
    }

    /// The position of the last event handed out (or the start position).
    pub fn position(&self) -> Position {
        self.after
    }

    /// Up to `max` events: whatever is already read, or else waits for at least one.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let first = self.next().await?;
        let mut batch = Vec::with_capacity(max.min(self.buffered.len() + 1));
        batch.push(first);
        while batch.len() < max {
            let Some(event) = self.buffered.pop_front() else {
                break;
            };
            self.after = event.position;
            batch.push(event);
        }
        Ok(batch)
    }

    /// The next event, waiting for one to be appended when caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.after = event.position;
                return Ok(event);
            }
            // Mark the hint seen before reading, so an append that lands
            // between the read and the wait still wakes us.
            self.hint.borrow_and_update();
            let page = if self.payloads {
                self.store.read_all(self.after, PAGE).await?
            } else {
                self.store.read_all_without_payloads(self.after, PAGE).await?
            };
            if page.is_empty() {
                if let Ok(Err(_closed)) = tokio::time::timeout(POLL_INTERVAL, self.hint.changed()).await {
                    // The store stopped sending hints: fall back to polling.
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            } else {
                self.buffered.extend(page);
            }
        }
    }
}
