//! The `hookwise` command line: a thin layer over the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hookwise::cli::admin::{self, write_openapi};
use hookwise::cli::check_agent::{check_agent, CheckAgentArgs};
use hookwise::cli::env_file;
use hookwise::cli::events::print_events;
use hookwise::cli::explain::render;
use hookwise::cli::send::{send, SendArgs};
use hookwise::cli::setup::{setup, SetupArgs};
use hookwise::cli::CliError;
use hookwise::config::{Config, GitHubAppArgs, ProcessArgs, ProcessSettings, ServeArgs, StoreArgs};
use hookwise::github::signature::{WebhookSecret, WebhookSecrets};
use hookwise::process::explain::explain_delivery;
use hookwise::reconcile::{reconcile, DeliveriesClient, ReconcileOptions};
use hookwise::sql::SqlDb;
use hookwise::store::{self, Position};
use hookwise::Application;
use tracing_subscriber::EnvFilter;

/// Intake allocates and frees a few buffers per delivery on several threads;
/// mimalloc does that with less CPU than glibc's malloc (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (the crate exports no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Returns freed memory to the OS at once instead of after mimalloc's default
/// 10 ms: under load, the bodies of thousands of deliveries a second pass
/// through many threads' heaps, and the delay kept ~20 MB more resident.
fn return_freed_memory_promptly() {
    // SAFETY: sets a global option of the allocator; no memory is touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[derive(Parser)]
#[command(name = "hookwise", version, about = "Verified, durable GitHub App webhook intake for AI coding agents")]
struct Cli {
    /// Log format: `text` or `json` (one JSON object per line).
    #[arg(long, env = "HOOKWISE_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// `serve`'s env file (`hookwise` alone serves too, configured by the environment).
    fn env_file(&self) -> Option<std::path::PathBuf> {
        match &self.command {
            Some(Command::Serve(args)) => args.env_file.clone(),
            None => std::env::var_os("HOOKWISE_ENV_FILE").filter(|v| !v.is_empty()).map(Into::into),
            Some(_) => None,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve(Box<ServeArgs>),
    /// Call the configured agent runtime once, starting nothing, and print one line per
    /// check (`ok` or `FAIL`, naming the setting to fix). Exits 1 when any check fails.
    CheckAgent(Box<CheckAgentArgs>),
    /// Create the GitHub App from a manifest: opens a local page that sends you to GitHub,
    /// then writes the App's id, key and webhook secret to an env file for `serve --env-file`.
    Setup(Box<SetupArgs>),
    /// Sign a payload file and post it to a hookwise (or any GitHub webhook receiver).
    Send(SendArgs),
    /// Print the event log as JSON lines.
    Events {
        #[command(flatten)]
        store: StoreArgs,
        /// Start after this position (exclusive).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep printing new events as they are appended.
        #[arg(long)]
        follow: bool,
    },
    /// Say why a delivery did or did not ask for the agent: for each way of asking, whether it
    /// matched or why not, and what became of its trigger. Uses the trigger settings of `serve`
    /// (HOOKWISE_MENTION, HOOKWISE_TRIGGER_LABEL, HOOKWISE_TRIGGERS, HOOKWISE_BOT_LOGIN, …).
    Explain {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        process: Box<ProcessArgs>,
        /// The delivery's GUID (`X-GitHub-Delivery`).
        delivery_id: String,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask GitHub to redeliver what never arrived: lists the App's recent deliveries and
    /// redelivers every one that never succeeded and is not in the log. Prints the run's report.
    Reconcile {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        github: GitHubAppArgs,
        /// How far back to look (at most GitHub's 3 days), e.g. `6h`.
        #[arg(long, default_value = "3d")]
        since: humantime::Duration,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the OpenAPI spec of the query API.
    Openapi {
        /// Where to write it.
        #[arg(long, default_value = "openapi/openapi.json")]
        output: std::path::PathBuf,
    },
    /// Rebuild a read model (or `all`) from the log into new tables, then swap them in.
    Rebuild {
        #[command(flatten)]
        store: StoreArgs,
        /// A read model's name, or `all`.
        read_model: String,
    },
    /// Feed a stretch of history through the read models again (never the process manager).
    Replay {
        #[command(flatten)]
        store: StoreArgs,
        /// First position to feed again (inclusive).
        #[arg(long)]
        from: u64,
        /// Last position (inclusive); the head when absent.
        #[arg(long)]
        to: Option<u64>,
        /// A read model's name, or `all`.
        #[arg(long, default_value = "all")]
        read_model: String,
    },
    /// Check every stored delivery's signature against its stored bytes.
    VerifyLog {
        #[command(flatten)]
        store: StoreArgs,
        /// The webhook secret to check with.
        #[arg(long, env = "GITHUB_APP_WEBHOOK_SECRET", hide_env_values = true)]
        webhook_secret: String,
        /// Also accepted: the previous secret.
        #[arg(long, env = "GITHUB_APP_WEBHOOK_SECRET_PREVIOUS", hide_env_values = true)]
        webhook_secret_previous: Option<String>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    return_freed_memory_promptly();
    let mut cli = Cli::parse();
    if let Some(path) = cli.env_file() {
        // Still one thread: setting the environment here races with nothing.
        match env_file::read_missing(&path, |key| std::env::var_os(key).is_some()) {
            Ok(pairs) => pairs.into_iter().for_each(|(key, value)| std::env::set_var(key, value)),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
        // Parsed again: flags and the environment, now with the file's variables.
        cli = Cli::parse();
    }
    init_logging(cli.log_format);
    // SQLite work runs on blocking threads: a small pool is plenty and keeps
    // the allocator from growing an arena per thread.
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(16).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or_else(|| Command::Serve(Box::new(ServeArgs::parse_from_env())));
    match runtime.block_on(run(command)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Serve(args) => {
            // Everything `serve` creates (the data directory, the log, its WAL,
            // the read side, the lease file) is its owner's alone: deliveries
            // hold private repositories' contents, and a lease file another
            // user could open is a lease another user could hold.
            // SAFETY: umask only sets the process's file-creation mask.
            unsafe { libc::umask(0o077) };
            let config = Config::from_args(*args)?;
            let app = Application::build(config).await?;
            // Printed on stdout so scripts (and tests) can find a port-0 address.
            println!("hookwise listening on http://{}", app.local_addr());
            app.run_until(hookwise::app::shutdown_signal()).await.map_err(CliError::Serve)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckAgent(args) => {
            let (lines, ok) = check_agent(*args).await?;
            for line in lines {
                println!("{line}");
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Setup(args) => {
            let created = setup(*args, |url| {
                // stdout, so scripts (and tests) can find the port.
                println!("hookwise setup: open {url} in your browser to create the GitHub App");
            })
            .await?;
            println!("Created the GitHub App {}.", created.slug);
            println!("Credentials: {} (private key: {})", created.env_file.display(), created.key_file.display());
            println!("Start hookwise: hookwise serve --env-file {}", created.env_file.display());
            println!("Install the App on your repositories: {}", created.install_url);
            Ok(ExitCode::SUCCESS)
        }
        Command::Send(args) if args.print => {
            let (event, body) = args.event_and_body().await?;
            eprintln!("X-GitHub-Event: {event}");
            println!("{}", String::from_utf8_lossy(&body));
            Ok(ExitCode::SUCCESS)
        }
        Command::Send(args) => {
            let (status, body) = send(&args).await?;
            println!("{status}");
            println!("{body}");
            Ok(if (200..300).contains(&status) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Events { store, after, follow } => {
            let store = open_log(&store).await?;
            print_events(store, Position(after), follow).await.map_err(CliError::ReadLog)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { store, process, delivery_id, json } => {
            let rules = ProcessSettings::from_args(*process, None, String::new())?.rules;
            let log = open_log(&store).await?;
            let explanation = explain_delivery(log.as_ref(), &delivery_id, &rules).await;
            log.close().await;
            let explanation = explanation?.ok_or(CliError::NoSuchDelivery(delivery_id))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&explanation).unwrap_or_default());
            } else {
                print!("{}", render(&explanation));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile { store, github, since } => {
            let deliveries = DeliveriesClient::new(Arc::new(github.client()?));
            let store = open_log(&store).await?;
            let options = ReconcileOptions { since: since.into(), ..ReconcileOptions::default() };
            let outcome = reconcile(store.as_ref(), &deliveries, &options).await;
            store.close().await;
            let report = outcome?;
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi { output } => {
            write_openapi(&output).map_err(|source| CliError::Write { path: output.clone(), source })?;
            println!("wrote {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild { store, read_model } => {
            let models = hookwise::projections::select(&read_model)?;
            let (log, db) = open_both(&store).await?;
            admin::prepare_all(&db).await?;
            let reports = hookwise::commands::admin::rebuild(log.as_ref(), &db, &models, "cli")
                .await
                .map_err(CliError::Rebuild)?;
            for report in reports {
                println!(
                    "{}: {} events up to position {} in {} ms",
                    report.read_model, report.events, report.position, report.duration_ms
                );
            }
            log.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { store, from, to, read_model } => {
            if from == 0 || to.is_some_and(|to| to < from) {
                return Err(CliError::Usage("--from must be at least 1 and not after --to"));
            }
            let models = hookwise::projections::select(&read_model)?;
            let (log, db) = open_both(&store).await?;
            admin::prepare_all(&db).await?;
            for model in models {
                let report = hookwise::commands::admin::replay(
                    log.as_ref(),
                    &db,
                    model.as_ref(),
                    Position(from),
                    to.map(Position),
                    "cli",
                )
                .await
                .map_err(|source| CliError::Replay { read_model: model.name(), source })?;
                println!(
                    "{}: fed {} events again, now at position {}",
                    report.read_model, report.events, report.position
                );
            }
            log.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyLog { store, webhook_secret, webhook_secret_previous } => {
            let current = WebhookSecret::parse(&webhook_secret).map_err(CliError::WebhookSecret)?;
            let previous = webhook_secret_previous.as_deref().and_then(|s| WebhookSecret::parse(s).ok());
            let secrets = WebhookSecrets { current, previous };
            let log = open_log(&store).await?;
            let report = admin::verify_log(log.as_ref(), &secrets).await?;
            log.close().await;
            for (position, delivery, problem) in &report.failures {
                println!("FAILED position {position} delivery {delivery}: {problem}");
            }
            println!("{} deliveries checked, {} failed", report.checked, report.failures.len());
            Ok(if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Migrate { store } => {
            let store = open_log(&store).await?;
            store.close().await;
            println!("schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The event log that `store` names.
async fn open_log(store: &StoreArgs) -> Result<Arc<dyn store::EventStore>, CliError> {
    store::open_log(&store.database_url, store.eventstore_url()).await.map_err(CliError::OpenLog)
}

/// The log and the SQL database (read models, checkpoints) that `store` names.
async fn open_both(store: &StoreArgs) -> Result<(Arc<dyn store::EventStore>, SqlDb), CliError> {
    let log = open_log(store).await?;
    let db = SqlDb::connect(&store.database_url).await.map_err(CliError::OpenDatabase)?;
    Ok((log, db))
}

trait ParseFromEnv {
    fn parse_from_env() -> Self;
}

impl ParseFromEnv for ServeArgs {
    /// `hookwise` with no subcommand serves, configured from the environment.
    fn parse_from_env() -> Self {
        #[derive(Parser)]
        struct ServeOnly {
            #[command(flatten)]
            args: ServeArgs,
        }
        ServeOnly::parse_from(["hookwise"]).args
    }
}
