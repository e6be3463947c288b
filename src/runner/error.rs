use crate::events::DecodeError;
use crate::sql::SqlError;
use crate::store::{Position, RecordedEvent, StoreError};

/// Why a handler, a rebuild or a replay could not go on.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An event of the log does not decode as its type says.
    #[error("{event_type} at {position}: {source}")]
    Decode {
        event_type: String,
        position: Position,
        #[source]
        source: DecodeError,
    },
    /// An event or a row to write could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// A task the work was handed to panicked or was cancelled.
    #[error("a task of the work failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the checkpoint was moved by a rebuild, a replay or another runner")]
    CheckpointMoved,
    /// A second rebuild or a replay of the same read model overtook this rebuild.
    #[error("{read_model} was rebuilt or replayed concurrently; try again")]
    RebuiltConcurrently { read_model: &'static str },
}

impl HandlerError {
    /// `event` did not decode.
    pub fn decode(event: &RecordedEvent, source: DecodeError) -> Self {
        HandlerError::Decode { event_type: event.event_type.clone(), position: event.position, source }
    }
}
