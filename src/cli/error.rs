//! Why a subcommand of the `hookwise` binary failed: what it was doing, and
//! the error that stopped it (kept as the source).

use std::path::PathBuf;

use crate::app::StartError;
use crate::config::ConfigError;
use crate::projections::UnknownReadModel;
use crate::reconcile::ReconcileError;
use crate::runner::HandlerError;
use crate::sql::SqlError;
use crate::store::StoreError;

use super::env_file::EnvFileError;
use super::send::SendError;
use super::setup::SetupError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    EnvFile(#[from] EnvFileError),
    #[error("opening the event log: {0}")]
    OpenLog(#[source] StoreError),
    #[error("reading the event log: {0}")]
    ReadLog(#[source] StoreError),
    #[error("opening the SQL database: {0}")]
    OpenDatabase(#[source] SqlError),
    #[error("preparing the read models: {0}")]
    PrepareReadModels(#[source] HandlerError),
    #[error(transparent)]
    UnknownReadModel(#[from] UnknownReadModel),
    #[error("rebuilding: {0}")]
    Rebuild(#[source] HandlerError),
    #[error("replaying {read_model}: {source}")]
    Replay { read_model: &'static str, source: HandlerError },
    #[error("reconciling: {0}")]
    Reconcile(#[from] ReconcileError),
    #[error("writing {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the webhook secret {0}")]
    WebhookSecret(&'static str),
    #[error("explaining: {0}")]
    Explain(#[from] crate::process::explain::ExplainError),
    #[error("the log has no delivery {0}")]
    NoSuchDelivery(String),
    /// Arguments that do not go together.
    #[error("{0}")]
    Usage(&'static str),
}
