//! Running the store conformance suite against KurrentDB.
//!
//! KurrentDB positions come from log byte offsets: ordered, but sparse and
//! shared by every test on the server. The suite states positions as 1, 2, 3…
//! of a fresh log, so [`DensePositions`] presents each real position as its
//! ordinal in the test's own (scoped) log. The mapping is built only from the
//! store's own `read_all` pages and checks as it goes that they are strictly
//! increasing, so a lost, repeated or misordered event still fails the suite:
//! an ordinal is never invented for a position `read_all` did not return.

use std::sync::Arc;

use hookwise::store::EventStore;

/// The variable naming the KurrentDB server to test against.
pub const EVENTSTORE_URL_VAR: &str = "EVENTSTORE_URL";

/// Opens the KurrentDB store at `url` limited to `scope`, with dense positions.
#[cfg(feature = "kurrentdb")]
pub async fn open_dense(url: &str, scope: &str) -> Arc<dyn EventStore> {
    Arc::new(dense::DensePositions::new(open_scoped(url, scope).await))
}

#[cfg(not(feature = "kurrentdb"))]
pub async fn open_dense(_url: &str, _scope: &str) -> Arc<dyn EventStore> {
    unreachable!("KurrentDB tests skip before opening a store without the kurrentdb feature")
}

/// Opens the KurrentDB store at `url` limited to `scope`, real positions.
#[cfg(feature = "kurrentdb")]
pub async fn open_scoped(url: &str, scope: &str) -> Arc<dyn EventStore> {
    let store = hookwise::store::kurrent::KurrentStore::open_scoped(url, scope)
        .await
        .unwrap_or_else(|e| panic!("opening KurrentDB at {EVENTSTORE_URL_VAR}: {e}"));
    Arc::new(store)
}

#[cfg(feature = "kurrentdb")]
mod dense {
    use std::sync::Arc;

    use async_trait::async_trait;
    use hookwise::store::{AppendResult, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError};
    use tokio::sync::{watch, Mutex};

    /// A store whose positions are ordinals 1, 2, 3… of the wrapped store's log.
    pub struct DensePositions {
        inner: Arc<dyn EventStore>,
        /// The wrapped store's positions in log order, as far as read so far.
        known: Mutex<Vec<Position>>,
    }

    impl DensePositions {
        pub fn new(inner: Arc<dyn EventStore>) -> Self {
            DensePositions { inner, known: Mutex::new(Vec::new()) }
        }

        /// Reads the rest of the log into `known`.
        async fn catch_up(&self, known: &mut Vec<Position>) -> Result<(), StoreError> {
            loop {
                let after = known.last().copied().unwrap_or(Position::START);
                let page = self.inner.read_all(after, 1000).await?;
                if page.is_empty() {
                    return Ok(());
                }
                for event in page {
                    let last = known.last().copied().unwrap_or(Position::START);
                    assert!(event.position > last, "read_all after {after} returned {} after {last}", event.position);
                    known.push(event.position);
                }
            }
        }

        async fn ordinal(&self, real: Position) -> Result<Position, StoreError> {
            if real == Position::START {
                return Ok(Position::START);
            }
            let mut known = self.known.lock().await;
            if known.last().is_none_or(|last| *last < real) {
                self.catch_up(&mut known).await?;
            }
            match known.binary_search(&real) {
                Ok(i) => Ok(Position(i as u64 + 1)),
                Err(_) => panic!("position {real} was never returned by read_all"),
            }
        }

        /// The real position of ordinal `n`; `None` when the log is shorter.
        async fn real(&self, ordinal: Position) -> Result<Option<Position>, StoreError> {
            let Some(index) = (ordinal.0 as usize).checked_sub(1) else {
                return Ok(Some(Position::START));
            };
            let mut known = self.known.lock().await;
            if known.len() <= index {
                self.catch_up(&mut known).await?;
            }
            Ok(known.get(index).copied())
        }

        async fn dense(&self, mut events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, StoreError> {
            for event in &mut events {
                event.position = self.ordinal(event.position).await?;
            }
            Ok(events)
        }
    }

    #[async_trait]
    impl EventStore for DensePositions {
        async fn append(
            &self,
            stream: &str,
            expected: ExpectedVersion,
            events: Vec<NewEvent>,
        ) -> Result<AppendResult, StoreError> {
            let mut result = self.inner.append(stream, expected, events).await?;
            if let Some(real) = result.first_position {
                result.first_position = Some(self.ordinal(real).await?);
            }
            Ok(result)
        }

        async fn read_stream(
            &self,
            stream: &str,
            from_version: u64,
            limit: usize,
        ) -> Result<Vec<RecordedEvent>, StoreError> {
            let events = self.inner.read_stream(stream, from_version, limit).await?;
            self.dense(events).await
        }

        async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
            let Some(real_after) = self.real(after).await? else {
                return Ok(Vec::new());
            };
            let events = self.inner.read_all(real_after, limit).await?;
            self.dense(events).await
        }

        async fn head(&self) -> Result<Position, StoreError> {
            let real = self.inner.head().await?;
            self.ordinal(real).await
        }

        async fn ping(&self) -> Result<(), StoreError> {
            self.inner.ping().await
        }

        fn head_hint(&self) -> watch::Receiver<Position> {
            self.inner.head_hint()
        }

        async fn close(&self) {
            self.inner.close().await
        }
    }
}
