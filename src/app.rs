//! Building and running the service.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::background::run_while_leading;
use crate::config::{Config, ProcessSettings, Role, ServerLimits};
use crate::forward::{run_sink, ForwardSettings, SinkStatus};
use crate::github::client::GitHubClient;
use crate::process::executor::Executor;
use crate::process::outbox::ExecutorWake;
use crate::process::ProcessManager;
use crate::projections::{read_model, read_models, ReadModelHandler};
use crate::reconcile::{run_periodically, DeliveriesClient};
use crate::runner::{run_handlers, EventHandler, HandlerError, CHECKPOINT_MIGRATIONS};
use crate::server;
use crate::sql::{SqlDb, SqlError};
use crate::store::{self, EventStore, StoreError};
use crate::triggers::classify::{TriggerRules, TriggerSwitch};

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A bound, ready-to-run hookwise server.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// With the connection cap fitted to the open-file limit.
    server: ServerLimits,
    state: AppState,
    db: SqlDb,
    /// Handlers that follow the log together: one reading and one transaction per batch.
    handler_groups: Vec<Vec<Arc<dyn EventHandler>>>,
    process: ProcessSettings,
    /// The process manager's wake-up for this instance's executor.
    executor_wake: ExecutorWake,
    role: Role,
    forward: Arc<ForwardSettings>,
    sinks: Arc<[Arc<SinkStatus>]>,
    /// The periodic missed-delivery reconciliation, when configured.
    reconcile: Option<(DeliveriesClient, Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the event log ({log}): {source}")]
    Store { log: String, source: StoreError },
    #[error("the event log ({log}) cannot be written, so no delivery could be stored: {source}")]
    LogNotWritable { log: String, source: StoreError },
    #[error("preparing the database: {0}")]
    Sql(#[from] SqlError),
    #[error("preparing the read models: {0}")]
    ReadModels(#[from] HandlerError),
    #[error("listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// How long start waits for `GET /app` before going on without the bot login.
const BOT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The trigger rules, with the App's bot login fetched once from `GET /app`
/// when assignments ask and `HOOKWISE_BOT_LOGIN` does not name it. A failure
/// leaves assignments asking nothing until a restart: start never waits on
/// GitHub for longer than [`BOT_LOGIN_TIMEOUT`].
async fn rules_with_bot_login(process: &ProcessSettings) -> TriggerRules {
    let mut rules = process.rules.clone();
    let (true, None, Some(credentials)) =
        (rules.enabled.contains(&TriggerSwitch::Assign), &rules.bot_login, process.github.clone())
    else {
        return rules;
    };
    let github = GitHubClient::new(&process.github_api_url, Some(credentials));
    match tokio::time::timeout(BOT_LOGIN_TIMEOUT, github.bot_login()).await {
        Ok(Ok(login)) => {
            tracing::info!(%login, "assignments to the App's bot user ask for the agent");
            rules.bot_login = Some(login);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "GET /app failed: assignment triggers are off until a restart"),
        Err(_) => tracing::warn!("GET /app timed out: assignment triggers are off until a restart"),
    }
    rules
}

impl Application {
    /// Opens (and migrates) the store and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let log = store::describe_log(&config.database_url, config.eventstore_url.as_deref());
        let store = store::open_log(&config.database_url, config.eventstore_url.as_deref())
            .await
            .map_err(|source| StartError::Store { log, source })?;
        let db = SqlDb::connect(&config.database_url).await?;
        Self::build_with(config, store, db).await
    }

    /// Builds on an already opened store and SQL database (the KurrentDB
    /// backend pairs a remote log with a SQL database).
    pub async fn build_with(config: Config, store: Arc<dyn EventStore>, db: SqlDb) -> Result<Self, StartError> {
        // Refuse to answer GitHub at all rather than refuse every delivery.
        if let Err(source) = store.check_writable().await {
            let log = store::describe_log(&config.database_url, config.eventstore_url.as_deref());
            return Err(StartError::LogNotWritable { log, source });
        }
        db.migrate("checkpoints", CHECKPOINT_MIGRATIONS).await?;
        // The process manager follows the log on its own; the read models
        // share one reading of it and one transaction per batch. Each keeps
        // its own checkpoint.
        let executor_wake = ExecutorWake::default();
        let rules = rules_with_bot_login(&config.process).await;
        let process_manager = ProcessManager::new(store.clone(), rules.clone(), executor_wake.clone(), db.dialect())
            .with_per_thread(config.process.per_thread)
            .with_daily_limits(config.process.daily_limits, config.process.limits_clock.clone())
            .with_running_limits(config.process.running_limits, config.process.max_proactive_per_pr);
        let mut read_model_handlers: Vec<Arc<dyn EventHandler>> = Vec::new();
        for model in read_models() {
            read_model::prepare(&db, model.as_ref()).await?;
            read_model_handlers.push(Arc::new(ReadModelHandler::new(model)));
        }
        let handler_groups = vec![vec![Arc::new(process_manager) as Arc<dyn EventHandler>], read_model_handlers];
        for handler in handler_groups.iter().flatten() {
            db.migrate(handler.name(), handler.migrations()).await?;
        }
        let bind_error = |source| StartError::Bind { addr: config.bind, source };
        let listener = TcpListener::bind(config.bind).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let server =
            ServerLimits { max_connections: server::connection_cap(config.server.max_connections), ..config.server };
        crate::metrics::handle();
        let sinks: Arc<[Arc<SinkStatus>]> =
            config.forward.sinks.iter().map(|sink| Arc::new(SinkStatus::new(sink.clone()))).collect();
        let forward = Arc::new(config.forward);
        let reconcile = match (config.reconcile_interval, config.github_credentials) {
            (Some(interval), Some(credentials)) => {
                let github = Arc::new(GitHubClient::new(&config.github_api_url, Some(credentials)));
                Some((DeliveriesClient::new(github), interval))
            }
            _ => None,
        };
        let state = AppState {
            store,
            secrets: config.secrets,
            webhooks_enabled: config.webhooks_enabled,
            db: db.clone(),
            callback_secret: config.process.callback_secret.clone(),
            agent_server_key: config
                .process
                .agent
                .as_ref()
                .filter(|agent| agent.runtime == crate::agent::settings::AgentRuntimeKind::OpenhandsAgentServer)
                .and_then(|agent| agent.api_key.clone()),
            api_token: config.api_token,
            admin_lock: Arc::default(),
            sinks: sinks.clone(),
            leading: Arc::new(AtomicBool::new(false)),
            rules,
            github_web_url: config.process.agent.as_ref().map_or_else(
                || crate::agent::settings::github_web_url(&config.github_api_url),
                |agent| agent.github_web_url.clone(),
            ),
        };
        let process = config.process;
        let role = config.role;
        Ok(Application {
            listener,
            local_addr,
            server,
            state,
            db,
            handler_groups,
            forward,
            sinks,
            reconcile,
            process,
            executor_wake,
            role,
        })
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
        // The intake role only answers HTTP: no background threads at all.
        let runtime = (self.role == Role::All).then(BackgroundRuntime::start).transpose()?;
        let leading = self.state.leading.clone();
        let mut background = Vec::new();
        if let Some(runtime) = &runtime {
            let executor = Executor::new(store.clone(), self.db.clone(), self.process, self.executor_wake);
            background.push(runtime.spawn(executor.run(stopped.clone())));
            let work = LeasedWork {
                store: store.clone(),
                db: self.db.clone(),
                handler_groups: self.handler_groups,
                http: reqwest::Client::new(),
                forward: self.forward,
                sinks: self.sinks.clone(),
                reconcile: self.reconcile,
            };
            let (sinks, leads) = (self.sinks.clone(), leading.clone());
            let leading_changed = move |now_leading: bool| {
                leads.store(now_leading, Ordering::Relaxed);
                if !now_leading {
                    sinks.iter().for_each(|sink| sink.stand_by());
                }
            };
            background.push(runtime.spawn(run_while_leading(
                self.db.clone(),
                move |stop| work.start(stop),
                leading_changed,
                stopped.clone(),
            )));
        }
        let result = server::serve(self.listener, api::routes(self.state), self.server, shutdown, SHUTDOWN_GRACE).await;
        let _ = stop.send(true);
        for task in background {
            let _ = task.await;
        }
        drop(runtime);
        store.close().await;
        result
    }
}

/// The work that runs on the instance holding the background lease: the
/// process manager and read models, the forwarders (which stop after the
/// server, so every accepted delivery is in the log for their final flush)
/// and reconciliation.
struct LeasedWork {
    store: Arc<dyn EventStore>,
    db: SqlDb,
    handler_groups: Vec<Vec<Arc<dyn EventHandler>>>,
    http: reqwest::Client,
    forward: Arc<ForwardSettings>,
    sinks: Arc<[Arc<SinkStatus>]>,
    reconcile: Option<(DeliveriesClient, Duration)>,
}

impl LeasedWork {
    /// Spawns every task on the current (background) runtime; each ends when `stop` turns true.
    fn start(&self, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for group in &self.handler_groups {
            tasks.push(tokio::spawn(run_handlers(self.store.clone(), self.db.clone(), group.clone(), stop.clone())));
        }
        for sink in self.sinks.iter() {
            tasks.push(tokio::spawn(run_sink(
                self.store.clone(),
                self.db.clone(),
                self.http.clone(),
                self.forward.clone(),
                sink.clone(),
                stop.clone(),
            )));
        }
        if let Some((deliveries, interval)) = &self.reconcile {
            tasks.push(tokio::spawn(run_periodically(self.store.clone(), deliveries.clone(), *interval, stop.clone())));
        }
        tasks
    }
}

/// How much lower than intake's the background work's CPU priority is (a
/// nice value). Webhook answers have GitHub's 10-second deadline and are what
/// must never be lost; the process manager, the read models and forwarding
/// follow the log and may lag behind a burst, then catch up. Under full load
/// the kernel gives them roughly a tenth of the CPU instead of an equal share.
const BACKGROUND_NICENESS: i32 = 10;

/// The threads that run everything that follows the log (handlers, executor,
/// forwarders, reconciliation), apart from the threads that answer HTTP.
struct BackgroundRuntime {
    handle: tokio::runtime::Handle,
    /// Taken when dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl BackgroundRuntime {
    fn start() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(8)
            .thread_name("background")
            .on_thread_start(lower_thread_priority)
            .enable_all()
            .build()
            .map(|runtime| BackgroundRuntime { handle: runtime.handle().clone(), runtime: Some(runtime) })
    }

    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(task)
    }
}

impl Drop for BackgroundRuntime {
    /// Releases the threads without blocking: dropping a runtime the usual way
    /// from async code (the server's future, finished or cancelled) panics.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's scheduling priority (Linux keeps a nice value
/// per thread). Best effort: a failure only costs intake some CPU.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
        let result = unsafe {
            let thread_id = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, thread_id as libc::id_t, BACKGROUND_NICENESS)
        };
        if result != 0 {
            tracing::debug!("could not lower the background threads' priority");
        }
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
