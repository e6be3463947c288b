//! Building and running the service.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::Server;

use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::projections::{read_model, read_models, run_handler, EventHandler, ReadModelHandler, CHECKPOINT_MIGRATIONS};
use crate::sql::{SqlDb, SqlError};
use crate::store::{self, EventStore, StoreError};

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A bound, ready-to-run hookwise server.
pub struct Application {
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
    state: AppState,
    db: SqlDb,
    handlers: Vec<Arc<dyn EventHandler>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the event store: {0}")]
    Store(#[from] StoreError),
    #[error("preparing the database: {0}")]
    Sql(#[from] SqlError),
    #[error("listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

impl Application {
    /// Opens (and migrates) the store and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let store = store::open(&config.database_url).await?;
        let db = SqlDb::connect(&config.database_url).await?;
        Self::build_with(config, store, db).await
    }

    /// Builds on an already opened store and SQL database (the KurrentDB
    /// backend pairs a remote log with a SQL database).
    pub async fn build_with(config: Config, store: Arc<dyn EventStore>, db: SqlDb) -> Result<Self, StartError> {
        db.migrate("checkpoints", CHECKPOINT_MIGRATIONS).await?;
        // Read models and the process manager: each follows the log from its checkpoint.
        let mut handlers: Vec<Arc<dyn EventHandler>> = Vec::new();
        for model in read_models() {
            read_model::prepare(&db, model.as_ref())
                .await
                .map_err(|e| StartError::Sql(SqlError::Database(e.to_string())))?;
            handlers.push(Arc::new(ReadModelHandler::new(model)));
        }
        for handler in &handlers {
            db.migrate(handler.name(), handler.migrations()).await?;
        }
        let acceptor = TcpListener::bind(config.bind)
            .into_acceptor()
            .await
            .map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let local_addr = acceptor.local_addr().first().and_then(|a| a.as_socket_addr().copied()).unwrap_or(config.bind);
        let state = AppState {
            store,
            secrets: config.secrets,
            webhooks_enabled: config.webhooks_enabled,
            db: db.clone(),
            api_token: config.api_token,
            admin_lock: Arc::default(),
        };
        Ok(Application { acceptor, local_addr, state, db, handlers })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn store(&self) -> Arc<dyn EventStore> {
        self.state.store.clone()
    }

    /// Serves until `shutdown` resolves, lets in-flight requests finish, then
    /// flushes the store's writer.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let store = self.state.store.clone();
        let (stop, stopped) = watch::channel(false);
        let background: Vec<_> = self
            .handlers
            .into_iter()
            .map(|handler| tokio::spawn(run_handler(store.clone(), self.db.clone(), handler, stopped.clone())))
            .collect();
        let result = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(api::routes(self.state), shutdown, Some(SHUTDOWN_GRACE))
            .await;
        let _ = stop.send(true);
        for task in background {
            let _ = task.await;
        }
        store.close().await;
        result
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested");
}
