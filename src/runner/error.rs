use crate::sql::SqlError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the checkpoint was moved by a rebuild, a replay or another runner")]
    CheckpointMoved,
    #[error("{0}")]
    Other(String),
}
