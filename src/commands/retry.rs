//! `retry`: an admin asks to run an abandoned trigger's failed step again
//! (or a pull request's abandoned enrichment). Decided from the subject's own
//! stream, never from a read model that may lag it, and appended with an
//! event id derived from the abandonment and the exact version read: asking
//! twice for the same abandonment records one retry, and a retry asked the
//! moment the abandonment is in the log is seen.

use uuid::Uuid;

use crate::events::{streams, DecodeError, DomainEvent};
use crate::process::enrichment::EnrichmentState;
use crate::process::outbox;
use crate::sql::{SqlDb, SqlError};
use crate::store::{EventStore, ExpectedVersion, NewEvent, StoreError};
use crate::triggers::{status, FoldError, TriggerState};

/// How often a retry is decided again when another append moved the stream
/// between the read and the append.
const ATTEMPTS: usize = 3;

/// A retry was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryRecorded {
    pub stream: String,
    /// Log position of the retry event.
    pub position: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no trigger or pull request enrichment {0}")]
    NotFound(Uuid),
    /// Nothing to retry: never abandoned, still running, or retried already.
    #[error("{what} {id} is {status}; only abandoned triggers can be retried")]
    NotAbandoned { what: &'static str, id: Uuid, status: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("{stream} cannot be read: {source}")]
    Decode { stream: String, source: DecodeError },
    #[error(transparent)]
    Fold(#[from] FoldError),
    #[error("encoding the retry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Records the retry of what `id` names: a trigger, else a pull request's
/// enrichment (by the subject id its `EnrichmentAbandoned` carries).
pub async fn retry(
    store: &dyn EventStore,
    db: &SqlDb,
    id: Uuid,
    requested_by: &str,
) -> Result<RetryRecorded, RetryError> {
    let trigger_stream = streams::trigger(id);
    for _ in 0..ATTEMPTS {
        let history = store.read_stream(&trigger_stream, 0, usize::MAX).await?;
        let decided = if history.is_empty() {
            match enrichment_stream(db, id).await? {
                Some(stream) => decide_enrichment(store, &stream, id, requested_by).await?,
                None => return Err(RetryError::NotFound(id)),
            }
        } else {
            let state = TriggerState::fold(&history)?;
            let Some((retried, event_id)) = state.retry(requested_by) else {
                return Err(RetryError::NotAbandoned {
                    what: "trigger",
                    id,
                    status: status(&state).as_str().to_owned(),
                });
            };
            Decided {
                stream: trigger_stream.clone(),
                version: state.version,
                event: retried.to_new_event(event_id, None)?,
            }
        };
        let expected = decided.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        match store.append(&decided.stream, expected, vec![decided.event]).await {
            Ok(result) if result.already_stored => {
                return Err(RetryError::NotAbandoned { what: "trigger", id, status: "retried already".into() })
            }
            Ok(result) => {
                let position = result.first_position.map(|p| p.0).unwrap_or_default();
                return Ok(RetryRecorded { stream: decided.stream, position });
            }
            // Something was appended since the read: decide again on the new history.
            Err(StoreError::WrongExpectedVersion { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RetryError::Store(StoreError::Unavailable(format!("the stream of {id} kept changing; try again"))))
}

struct Decided {
    stream: String,
    version: Option<u64>,
    event: NewEvent,
}

async fn decide_enrichment(
    store: &dyn EventStore,
    stream: &str,
    subject: Uuid,
    requested_by: &str,
) -> Result<Decided, RetryError> {
    let history = store.read_stream(stream, 0, usize::MAX).await?;
    let state = EnrichmentState::fold(&history, subject)
        .map_err(|source| RetryError::Decode { stream: stream.to_owned(), source })?;
    let Some((retried, event_id)) = state.retry(requested_by) else {
        let status = if state.retries > 0 { "retried already" } else { "not abandoned" };
        return Err(RetryError::NotAbandoned { what: "pull request enrichment", id: subject, status: status.into() });
    };
    Ok(Decided { stream: stream.to_owned(), version: state.version, event: retried.to_new_event(event_id, None)? })
}

/// The PR stream of an enrichment, found through its outbox command (only to
/// locate the stream: whether it may be retried is the stream's to say).
async fn enrichment_stream(db: &SqlDb, subject: Uuid) -> Result<Option<String>, RetryError> {
    Ok(outbox::enrichment_pull_request(db, subject).await?.map(|pr| pr.stream()))
}
